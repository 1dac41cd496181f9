"""What a photo's colour is made of: the tone-and-stain fit the black-and-white-or-colour
decision reads (decision.py), on a small thumbnail (<= 128 px).

A scanned black-and-white print is rarely gray: sepia, selenium and gold toning, cyanotype blue
and postcard tints colour it by density; the paper yellows unevenly, foxes and stains; corners
fade; someone may have painted a cheek pink. Most of that chroma is explained by
- a tone: a function of brightness alone (per-luminance mean chroma), plus
- a stain field: chroma that varies slowly over the sheet (a coarse grid, bilinear),
and what is left is scanner noise, JPEG chroma artefacts and small marks. A colour photo's hues
change with its objects, independently of brightness, so more of its chroma is left over, in
patches of visible colour. The leftover and the figures below are what the network (net.py) and
the metadata rows see.
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
class Fit:
    """A thumbnail's planes (h, w float32: luma in [0, 1], chroma U and V) and what the tone and
    the stain field leave of its chroma, with the figures."""

    y: np.ndarray
    u: np.ndarray
    v: np.ndarray
    left_u: np.ndarray
    left_v: np.ndarray
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


def fit(thumb: np.ndarray) -> Fit:
    """The fit of a uint8 RGB thumbnail (h, w, 3), longest side <= THUMB for the calibrated
    figures: chroma = tone(luma) + stain field(x, y) by least squares, in one linear solve over
    the luma bins' indicators and the grid's bilinear weights together."""
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
    leftover = uv - design @ coef
    left = np.hypot(leftover[:, 0], leftover[:, 1])
    field = design[:, LUMA_BINS:] @ coef[LUMA_BINS:]
    evidence = ColourEvidence(
        mean_chroma=float(np.hypot(uv[:, 0], uv[:, 1]).mean()),
        residual=float(left.mean()),
        unexplained=float(np.maximum(left - VISIBLE, 0.0).mean()),
        field=float(np.hypot(*(field - field.mean(axis=0)).T).mean()),
    )
    return Fit(y, u, v, leftover[:, 0].reshape(h, w), leftover[:, 1].reshape(h, w), evidence)


def measure(thumb: np.ndarray) -> ColourEvidence:
    """The figures of `fit`, without the planes."""
    return fit(thumb).evidence
