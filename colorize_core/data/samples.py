"""Turning one source photo into one training sample: decode small, measure its colour, decide
whether it can teach colour at all, crop and resize to the working size, encode.

Colour is measured on a thumbnail (<= 96 px) in YUV units:
- mean chroma: the mean of |UV|. Gray scans have ~0; near-gray photos a little.
- hue concentration: |mean UV| / mean |UV|: 1 when every pixel has the same hue.
- tone residual: how far UV strays from a function of brightness alone (UV averaged per
  luminance bin). A sepia or cyanotype print's colour is set by its tone: residual ~0.
A sample is skipped as "gray", "near-gray" or "tinted" (one hue, set by brightness); such photos
teach the model nothing, or worse, teach it sepia.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from colorize_core.model.color import rgb_to_yuv
from colorize_core.model.metrics import colourfulness
from colorize_core.storage.imageio import decode, source_size

THUMB = 96
JPEG_QUALITY = 90


@dataclass(frozen=True)
class ColourStats:
    colourfulness: float
    mean_chroma: float
    hue_concentration: float
    tone_residual: float


@dataclass(frozen=True)
class ColourThresholds:
    """Calibrated on ../shared/data/photos-train (ImageNet): see the storage issue's note."""

    gray_chroma: float = 0.004  # about 1/255 of chroma: numerically gray
    near_gray_chroma: float = 0.010
    tint_concentration: float = 0.97
    tint_residual_ratio: float = 0.12  # tone residual / mean chroma


def colour_stats(img: Image.Image) -> ColourStats:
    """Measure an RGB image's colour on a <= 96 px thumbnail."""
    thumb = img.convert("RGB")
    thumb.thumbnail((THUMB, THUMB), Image.Resampling.BILINEAR)
    return colour_stats_array(np.asarray(thumb))


def colour_stats_array(thumb: np.ndarray) -> ColourStats:
    """Measure the colour of a uint8 RGB thumbnail (h, w, 3), <= 96 px for the usual figures."""
    rgb = torch.from_numpy(thumb.astype(np.float32) / 255.0).permute(2, 0, 1)  # (3, h, w)
    y, u, v = rgb_to_yuv(rgb).numpy()
    chroma = np.hypot(u, v)
    mean_chroma = float(chroma.mean())
    concentration = float(np.hypot(u.mean(), v.mean()) / mean_chroma) if mean_chroma > 0 else 0.0
    bins = np.minimum((y * 16).astype(np.int64), 15).ravel()
    counts = np.maximum(np.bincount(bins, minlength=16), 1)
    mu = np.bincount(bins, u.ravel(), 16) / counts
    mv = np.bincount(bins, v.ravel(), 16) / counts
    residual = float(np.hypot(u.ravel() - mu[bins], v.ravel() - mv[bins]).mean())
    return ColourStats(colourfulness(thumb), mean_chroma, concentration, residual)


def skip_reason(stats: ColourStats, limits: ColourThresholds = ColourThresholds()) -> str | None:
    """Why a photo cannot teach colour ("gray: ...", "near-gray: ...", "tinted: ..."), or None."""
    if stats.mean_chroma < limits.gray_chroma:
        return f"gray: mean chroma {stats.mean_chroma:.4f}"
    if stats.mean_chroma < limits.near_gray_chroma:
        return f"near-gray: mean chroma {stats.mean_chroma:.4f} < {limits.near_gray_chroma}"
    if stats.hue_concentration >= limits.tint_concentration and stats.tone_residual < limits.tint_residual_ratio * stats.mean_chroma:
        return (
            f"tinted: one hue (concentration {stats.hue_concentration:.3f}) "
            f"set by brightness (residual {stats.tone_residual:.4f})"
        )
    return None


def square_crop_resize(img: Image.Image, size: int) -> Image.Image:
    """The central square, resized to size x size. Cropping first keeps 1x5000 strips cheap."""
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    square = img.crop((left, top, left + side, top + side))
    return square.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=3.0)


def encode_sample(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


@dataclass(frozen=True)
class Sample:
    image: bytes  # JPEG, size x size
    width: int  # source size after EXIF orientation
    height: int
    stats: ColourStats


def prepare_sample(
    data: bytes,
    name: str,
    size: int,
    *,
    fast: bool = True,
    limits: ColourThresholds | None = ColourThresholds(),
) -> Sample | str:
    """Bytes -> a `Sample`, or the reason to skip it. Bad data raises `ImageDecodeError`.

    `fast` lets JPEG decode at 1/2-1/8 scale (the short side stays >= size); `fast=False` is the
    naive path (full decode, then resize) that the benchmark compares against. `limits=None`
    keeps every decodable photo."""
    img = decode(data, name=name, draft_size=(size, size) if fast else None)
    width, height = source_size(img)
    rgb = img.convert("RGB")
    stats = colour_stats(rgb)
    reason = skip_reason(stats, limits) if limits is not None else None
    if reason is not None:
        return reason
    return Sample(encode_sample(square_crop_resize(rgb, size)), width, height, stats)
