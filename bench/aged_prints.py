"""Black-and-white prints as archives hold them, made from colour photos: toned (sepia, selenium,
gold, cyanotype, split toning, postcard tints), faded, yellowed unevenly, foxed, stained,
vignetted, partly hand-tinted, scanned in RGB with chroma noise and saved as 4:2:0 JPEG.

Everything a print's chroma holds here says nothing about the scene: it is a function of the
print's density (the tone), a slowly varying field over the sheet (paper yellowing, stains, faded
corners), small marks (foxing), and small hand-tinted areas. The monochrome decision
(colorize_core/monochrome/) must call every one of them black-and-white; bench/monochrome_eval.py
measures that, and the tests make small ones with `age_print` too.

Hues are angles in the YUV chroma plane (U = blue minus luma, V = red minus luma), in degrees:
sepia brown ~130, yellow ~165, pink/magenta ~95, selenium purple-brown ~90, blue ~-40.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from colorize_core.bt601 import KB, KG, KR, U_MAX, V_MAX


# name -> (hue in degrees, (min, max) chroma at the strongest density, where it is strongest)
TONES: dict[str, tuple[float, tuple[float, float], str]] = {
    "neutral": (0.0, (0.0, 0.006), "mid"),
    "sepia": (130.0, (0.03, 0.10), "mid"),
    "warm": (145.0, (0.015, 0.05), "mid"),
    "selenium": (95.0, (0.015, 0.05), "shadow"),
    "gold": (-35.0, (0.01, 0.04), "shadow"),
    "cyanotype": (-40.0, (0.08, 0.18), "shadow"),
    "pink-postcard": (95.0, (0.03, 0.08), "flat"),
    "blue-postcard": (-30.0, (0.03, 0.08), "flat"),
    "green-postcard": (235.0, (0.02, 0.06), "flat"),
    "split": (0.0, (0.02, 0.06), "split"),
}


@dataclass
class AgedPrint:
    rgb: np.ndarray  # uint8 (H, W, 3), after the scan (and JPEG round trip when `jpeg`)
    tone: str
    marks: list[str] = field(default_factory=list)  # the aging and scanning applied, in order


def luma(rgb: np.ndarray) -> np.ndarray:
    f = rgb.astype(np.float32) / 255.0
    return f[..., 0] * KR + f[..., 1] * KG + f[..., 2] * KB


def yuv_to_rgb8(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    r = y + v / V_MAX * (1 - KR)
    b = y + u / U_MAX * (1 - KB)
    g = (y - KR * r - KB * b) / KG
    return (np.clip(np.stack([r, g, b], axis=-1), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _hue(deg: float) -> tuple[float, float]:
    return float(np.cos(np.radians(deg))), float(np.sin(np.radians(deg)))


def smooth_field(shape: tuple[int, int], rng: np.random.Generator, cells: int = 4) -> np.ndarray:
    """A slowly varying field in [0, 1] over the sheet: random values on a coarse grid, bicubic."""
    grid = rng.random((cells, cells)).astype(np.float32)
    img = Image.fromarray(grid, mode="F").resize((shape[1], shape[0]), Image.Resampling.BICUBIC)
    f = np.asarray(img)
    return np.clip((f - f.min()) / max(1e-6, float(f.max() - f.min())), 0.0, 1.0)


def _blob(shape: tuple[int, int], cy: float, cx: float, radius: float, rng: np.random.Generator, soft: float = 0.35) -> np.ndarray:
    """A soft, irregular blob in [0, 1] (1 inside) of about `radius` pixels, drawn only in its box."""
    h, w = shape
    out = np.zeros(shape, np.float32)
    reach = radius * (1.3 + soft)
    y0, y1 = max(0, int(cy - reach)), min(h, int(cy + reach) + 1)
    x0, x1 = max(0, int(cx - reach)), min(w, int(cx + reach) + 1)
    if y0 >= y1 or x0 >= x1:
        return out
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    d = np.hypot(yy - cy, xx - cx) / max(radius, 1.0)
    wobble = smooth_field((y1 - y0, x1 - x0), rng, cells=4) * 0.6 - 0.3
    out[y0:y1, x0:x1] = np.clip((1.0 + wobble - d) / soft, 0.0, 1.0)
    return out


def _tone(y: np.ndarray, name: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    hue, (lo, hi), where = TONES[name]
    s = rng.uniform(lo, hi)
    hue += rng.uniform(-12, 12)
    if where == "split":  # shadows one hue, highlights another
        h1, h2 = _hue(rng.uniform(100, 150)), _hue(rng.uniform(-60, 20))
        a, b = s * (1 - y), s * 0.6 * y
        return h1[0] * a + h2[0] * b, h1[1] * a + h2[1] * b
    shape = {"mid": 4 * y * (1 - y) + 0.25 * y, "shadow": (1 - y) ** 0.8, "flat": 0.3 + 0.7 * np.sqrt(np.clip(y, 0, 1))}[where]
    c, d = _hue(hue)
    return c * s * shape, d * s * shape


def age_print(rgb: np.ndarray, rng: np.random.Generator, *, tone: str | None = None, marks: tuple[str, ...] | None = None, jpeg: bool | None = None) -> AgedPrint:
    """A black-and-white print of colour photo `rgb` (uint8 (H, W, 3)), toned and aged at random
    (or as `tone` and `marks` say: any of fade, yellowing, foxing, stain, vignette, hand-tint,
    margin, scanner-noise), scanned, and saved as JPEG when `jpeg` (default: 70% of prints)."""
    tone = tone or str(rng.choice(list(TONES)))
    if marks is None:
        odds = {"fade": 0.5, "yellowing": 0.5, "foxing": 0.35, "stain": 0.3, "vignette": 0.35, "hand-tint": 0.2, "margin": 0.2, "scanner-noise": 0.7}
        marks = tuple(m for m, p in odds.items() if rng.random() < p)
    y = luma(rgb)
    h, w = y.shape
    side = min(h, w)
    done: list[str] = []
    if "fade" in marks:  # a print's own curve, faded: lifted blacks, dulled whites
        black, white, gamma = rng.uniform(0.0, 0.18), rng.uniform(0.8, 1.0), rng.uniform(0.75, 1.3)
        y = black + (white - black) * y**gamma
        done.append("fade")
    u, v = _tone(y, tone, rng)
    u, v = u.astype(np.float32), v.astype(np.float32)

    def add(amount: np.ndarray, hue: float, darken: float = 0.0) -> None:
        nonlocal y, u, v
        c, d = _hue(hue)
        u = u + c * amount
        v = v + d * amount
        if darken:
            y = y * (1 - darken * amount / max(1e-6, float(amount.max())))

    if "yellowing" in marks:  # uneven, stronger where the paper shows (highlights)
        field_ = smooth_field((h, w), rng, cells=int(rng.integers(2, 6)))
        add(rng.uniform(0.01, 0.06) * (0.25 + 0.75 * field_) * (0.3 + 0.7 * y), rng.uniform(140, 175), darken=0.05)
        done.append("yellowing")
    if "foxing" in marks:  # small rust-brown spots
        spots = np.zeros((h, w), np.float32)
        for _ in range(int(rng.integers(5, 60))):
            r = rng.uniform(0.003, 0.015) * side
            spots = np.maximum(spots, _blob((h, w), rng.uniform(0, h), rng.uniform(0, w), r, rng, soft=0.8))
        add(rng.uniform(0.03, 0.12) * spots, rng.uniform(115, 150), darken=0.12)
        done.append("foxing")
    if "stain" in marks:  # water stains: a brown area with a darker tide line
        for _ in range(int(rng.integers(1, 4))):
            blob = _blob((h, w), rng.uniform(0, h), rng.uniform(0, w), rng.uniform(0.1, 0.35) * side, rng)
            rim = np.clip(1 - np.abs(blob - 0.5) * 4, 0, 1)
            add(rng.uniform(0.015, 0.06) * (0.6 * blob + 0.8 * rim), rng.uniform(120, 160), darken=0.08)
        done.append("stain")
    if "vignette" in marks:  # faded, discoloured corners
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        d = np.hypot((yy - h / 2) / (h / 2), (xx - w / 2) / (w / 2)) / np.sqrt(2)
        edge = np.clip((d - rng.uniform(0.45, 0.75)) / 0.3, 0, 1)
        if rng.random() < 0.5:
            y = y + (rng.uniform(0.8, 1.0) - y) * edge * rng.uniform(0.3, 0.8)  # faded towards the paper
        else:
            y = y * (1 - edge * rng.uniform(0.2, 0.5))  # darkened
        add(rng.uniform(0.01, 0.05) * edge, rng.uniform(120, 170))
        done.append("vignette")
    if "hand-tint" in marks:  # a few small, softly painted areas (cheeks, a sky patch)
        for _ in range(int(rng.integers(1, 4))):
            blob = _blob((h, w), rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w, rng.uniform(0.03, 0.08) * side, rng, soft=0.6)
            add(rng.uniform(0.02, 0.07) * blob * (0.4 + 0.6 * y), float(rng.choice([95.0, 75.0, -40.0, 230.0])) + rng.uniform(-15, 15))
        done.append("hand-tint")
    if "margin" in marks:  # the paper around the image, in the highlight's tone
        m = int(rng.uniform(0.03, 0.1) * side)
        pad = ((m, m), (m, m))
        paper = rng.uniform(0.85, 0.97)
        light = y >= np.percentile(y, 90)  # >=: a scene clipped to white over a tenth of it has no pixel above
        uu, vv = float(np.median(u[light])), float(np.median(v[light]))
        y = np.pad(y, pad, constant_values=paper)
        u = np.pad(u, pad, constant_values=uu)
        v = np.pad(v, pad, constant_values=vv)
        done.append("margin")
    out = yuv_to_rgb8(np.clip(y, 0, 1), u, v)
    if "scanner-noise" in marks:  # per-channel sensor noise and a slight cast
        sigma = rng.uniform(0.5, 3.0)
        noisy = out.astype(np.float32) + rng.normal(0, sigma, out.shape).astype(np.float32) + rng.uniform(-2, 2, 3).astype(np.float32)
        out = np.clip(noisy + 0.5, 0, 255).astype(np.uint8)
        done.append("scanner-noise")
    if jpeg is None:
        jpeg = rng.random() < 0.7
    if jpeg:
        buf = io.BytesIO()
        Image.fromarray(out).save(buf, format="JPEG", quality=int(rng.integers(40, 93)), subsampling=2)
        out = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
        done.append("jpeg")
    return AgedPrint(out, tone, done)
