"""Turning one source photo into one training sample: decode small, decide whether it can teach
colour at all, crop and resize to the working size, encode.

Only real colour photos teach colour: gray scans, and toned or aged black-and-white prints
(sepia, cyanotype, yellowed paper, stains: colour that says nothing about the scene, and would
teach the model sepia), are skipped by the same decision the archive uses to leave real colour
photos alone (colorize_core/monochrome/), with the reason and its figures.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image

from colorize_core.model.metrics import colourfulness
from colorize_core.monochrome import MonochromeThresholds, Verdict, judge_thumbnail, thumbnail
from colorize_core.storage.imageio import decode, source_size

JPEG_QUALITY = 90


@dataclass(frozen=True)
class ColourStats:
    colourfulness: float
    verdict: Verdict  # the black-and-white-or-colour decision, with its figures


def colour_stats(img: Image.Image, limits: MonochromeThresholds = MonochromeThresholds()) -> ColourStats:
    """Measure an image's colour and decide, on the decision's thumbnail (<= monochrome.THUMB px)."""
    thumb = thumbnail(img)
    return ColourStats(colourfulness(thumb), judge_thumbnail(thumb, limits))


def skip_reason(stats: ColourStats) -> str | None:
    """Why a photo cannot teach colour ("gray: ...", "toned: ...", with the figures), or None."""
    return stats.verdict.reason if stats.verdict.monochrome else None


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
    limits: MonochromeThresholds | None = MonochromeThresholds(),
) -> Sample | str:
    """Bytes -> a `Sample`, or the reason to skip it. Bad data raises `ImageDecodeError`.

    `fast` lets JPEG decode at 1/2-1/8 scale (the short side stays >= size); `fast=False` is the
    naive path (full decode, then resize) that the benchmark compares against. `limits=None`
    keeps every decodable photo."""
    img = decode(data, name=name, draft_size=(size, size) if fast else None)
    width, height = source_size(img)
    rgb = img.convert("RGB")
    stats = colour_stats(rgb, limits or MonochromeThresholds())
    reason = skip_reason(stats) if limits is not None else None
    if reason is not None:
        return reason
    return Sample(encode_sample(square_crop_resize(rgb, size)), width, height, stats)
