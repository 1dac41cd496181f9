"""Is a photo black-and-white, whatever its paper and toning did to its pixels? One decision,
used by the archive (colorize black-and-white photos, skip real colour ones) and by dataset
building (keep only real colour photos to learn from).

A scanned black-and-white print is rarely gray: sepia, selenium and gold toning, cyanotype blue
and postcard tints colour it by density; the paper yellows unevenly, foxes and stains; corners
fade; someone may have painted a cheek pink. All of that chroma is explained by
- a tone: a function of brightness alone (per-luminance mean chroma), plus
- a stain field: chroma that varies slowly over the sheet (a coarse grid, bilinear),
and what is left is scanner noise, JPEG chroma artefacts and small marks. A colour photo's hues
change with its objects, independently of brightness, so a large share of its chroma is left
over after the same fit, in patches of visible colour. The decision looks at what is left, on
a small thumbnail (<= 128 px).

The thresholds are in `MonochromeThresholds`; bench/monochrome_eval.py measures them on a
labelled set (QUALITY.md, "Black-and-white or colour").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from colorize_core.bt601 import KB, KG, KR, U_MAX, V_MAX

THUMB = 128  # the longest side the decision looks at
LUMA_BINS = 16  # the tone: mean chroma per 1/16 of the luma range
GRID = 4  # the stain field: chroma at GRID x GRID nodes over the sheet, bilinear between them
VISIBLE = 0.03  # leftover chroma per pixel below this is noise, JPEG artefacts and faint marks


@dataclass(frozen=True)
class ColourEvidence:
    """What the decision saw, in YUV chroma units (|UV|; 0.01 is about 2.5/255 of red minus luma)."""

    mean_chroma: float  # mean |UV|: ~0 for a gray scan
    residual: float  # mean |UV| left after the tone and the stain field
    unexplained: float  # mean of (leftover |UV| - VISIBLE) over pixels where it is above VISIBLE
    field: float  # mean |UV| of the fitted field about its mean: how much colour varies over the sheet


GRAYSCALE = ColourEvidence(0.0, 0.0, 0.0, 0.0)  # a grayscale image: nothing to measure
GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


@dataclass(frozen=True)
class MonochromeThresholds:
    """The decision's limits, in one place; bench/monochrome_eval.py measures them (QUALITY.md)."""

    gray_chroma: float = 0.004  # mean chroma below this: numerically gray
    unexplained: float = 0.00015  # visible colour that tone and stains do not explain: a colour photo
    # Paper does not stain in saturated colours: a field stronger than this is a colour photo's
    # smooth colour (a sunset, a painted wall), whatever the fit explains (prints reach 0.023).
    field: float = 0.03


@dataclass(frozen=True)
class Verdict:
    monochrome: bool
    reason: str  # "gray: ...", "toned: ..." or "colour: ...", with the figures
    evidence: ColourEvidence


def thumbnail(img: Image.Image) -> np.ndarray:
    """Any PIL image -> the uint8 RGB thumbnail (longest side <= THUMB) the decision looks at.
    Resized before any conversion, as Pillow's `thumbnail` does, but without copying the source
    first: a 100 MP scan costs a thumbnail here, not a second 300 MB image."""
    w, h = img.size
    scale = min(1.0, THUMB / max(w, h))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    src = img if img.mode in ("RGB", "RGBA", "CMYK", "YCbCr") else img.convert("RGB")  # palettes: colours first
    small = src.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0) if size != src.size else src
    return np.asarray(small.convert("RGB"))


def _yuv(thumb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    f = thumb.astype(np.float32) / np.float32(255.0)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    y = r * KR + g * KG + b * KB
    return y, (b - y) * (U_MAX / (1 - KB)), (r - y) * (V_MAX / (1 - KR))


def _grid_basis(h: int, w: int, cells: int) -> np.ndarray:
    """(h*w, cells*cells) bilinear weights: a field given at the grid's nodes, everywhere."""

    def axis(n: int) -> np.ndarray:
        t = np.linspace(0.0, cells - 1.0, n)
        return np.clip(1.0 - np.abs(t[:, None] - np.arange(cells)[None, :]), 0.0, None)

    return np.einsum("yi,xj->yxij", axis(h), axis(w)).reshape(h * w, cells * cells).astype(np.float32)


def measure(thumb: np.ndarray) -> ColourEvidence:
    """The colour evidence of a uint8 RGB thumbnail (h, w, 3), longest side <= THUMB for the
    calibrated figures. Fits chroma = tone(luma) + stain field(x, y) by least squares, in one
    linear solve over the luma bins' indicators and the grid's bilinear weights together."""
    y, u, v = _yuv(thumb)
    h, w = y.shape
    uv = np.stack([u.ravel(), v.ravel()], axis=1)
    bins = np.minimum((y.ravel() * LUMA_BINS).astype(np.int64), LUMA_BINS - 1)
    tone = np.zeros((h * w, LUMA_BINS), np.float32)
    tone[np.arange(h * w), bins] = 1.0
    # The grid's constant is the tone's too: one node less, so the solution is unique.
    design = np.concatenate([tone, _grid_basis(h, w, GRID)[:, 1:]], axis=1)
    gram = design.T @ design + 1e-4 * np.eye(design.shape[1], dtype=np.float32)  # empty bins stay 0
    coef = np.linalg.solve(gram, design.T @ uv)
    left = np.hypot(*(uv - design @ coef).T)
    field = design[:, LUMA_BINS:] @ coef[LUMA_BINS:]
    return ColourEvidence(
        mean_chroma=float(np.hypot(uv[:, 0], uv[:, 1]).mean()),
        residual=float(left.mean()),
        unexplained=float(np.maximum(left - VISIBLE, 0.0).mean()),
        field=float(np.hypot(*(field - field.mean(axis=0)).T).mean()),
    )


def decide(evidence: ColourEvidence, limits: MonochromeThresholds = MonochromeThresholds()) -> Verdict:
    """Black-and-white (gray, or toned and aged) or a colour photo, with the figures that decided."""
    e = evidence
    if e.mean_chroma < limits.gray_chroma:
        return Verdict(True, f"gray: mean chroma {e.mean_chroma:.4f}", e)
    figures = (
        f"unexplained colour {e.unexplained * 1e4:.1f} (limit {limits.unexplained * 1e4:.1f}), "
        f"colour field {e.field:.3f} (limit {limits.field}), mean chroma {e.mean_chroma:.4f}"
    )
    if e.unexplained <= limits.unexplained and e.field <= limits.field:
        return Verdict(True, f"toned: {figures}", e)
    return Verdict(False, f"colour: {figures}", e)


def judge(img: Image.Image, limits: MonochromeThresholds = MonochromeThresholds()) -> Verdict:
    """`decide` on a PIL image of any mode and size; a grayscale mode is gray without a look."""
    if img.mode in GRAY_MODES:
        return decide(GRAYSCALE, limits)
    return decide(measure(thumbnail(img)), limits)
