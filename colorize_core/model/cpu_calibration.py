"""Calibration inputs for int8 conversion: real photographs, gray, at the model's working size.

Where they come from: COLORIZE_CPU_CALIBRATION (a folder of photos, e.g. a sample of the
archive to be colorized) when set, else the photographs bundled with scikit-image (a dependency:
the demo's offline data set), so a conversion needs no network and gives the same int8 model
on every machine. Each photo gives a few crops (whole, halves, mirrored) so ~a dozen photos
make a calibration set of the size NNCF wants (tens of images)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from colorize_core.settings import CPU_CALIBRATION, settings
from colorize_core.storage.files import bundled_photos, image_files

CALIBRATION_ENV = CPU_CALIBRATION


# The photographs among scikit-image's bundled images (not its charts, text, masks or drawings:
# chessboards, a logo, a phantom, a page would calibrate for what an archive never holds).
BUNDLED_PHOTOS = (
    "astronaut.png", "camera.png", "chelsea.png", "coffee.png", "coins.png", "rocket.jpg", "moon.png", "grass.png",
    "gravel.png", "brick.png", "motorcycle_left.png", "motorcycle_right.png", "hubble_deep_field.jpg", "ihc.png", "retina.jpg",
)  # fmt: skip


def calibration_photos() -> list[Path]:
    folder = settings().cpu_calibration
    if folder:
        photos = image_files(folder)
        if not photos:
            raise FileNotFoundError(f"{CALIBRATION_ENV}={folder}: no photos there")
        return photos
    return bundled_photos(BUNDLED_PHOTOS)


def _views(img: Image.Image) -> list[Image.Image]:
    w, h = img.size
    views = [img, ImageOps.mirror(img)]
    if min(w, h) >= 256:  # halves: more scales of the same scene, as an archive has
        views += [img.crop((0, 0, w // 2 + w // 4, h)), img.crop((w // 4, 0, w, h)), img.crop((0, h // 4, w, h))]
    return views


def calibration_batch(size: int, count: int = 64) -> np.ndarray:
    """(count, 1, size, size) float32 luma in [0, 1], resized as the Colorizer resizes (antialiased)."""
    out: list[np.ndarray] = []
    photos = calibration_photos()
    # Spread over the whole folder, not its first files (an archive folder is often by date).
    step = max(1, len(photos) // count)
    for path in photos[::step]:
        try:
            with Image.open(path) as img:
                img.load()
                gray = img.convert("L")
        except (OSError, ValueError):  # not an image after all; skip it
            continue
        if min(gray.size) < 32:
            continue
        for view in _views(gray):
            small = view.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None)
            out.append(np.asarray(small, dtype=np.float32)[None] / 255.0)
        if len(out) >= count:
            break
    if not out:
        raise FileNotFoundError("no calibration photos could be read")
    return np.stack(out[:count])
