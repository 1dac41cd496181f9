"""Evaluation: desaturate colour photos, colorize them, compare with the originals at their own
resolution, against the "do nothing" baseline of leaving them gray.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from colorize_core.data.dataset import list_image_files
from colorize_core.model.infer import Colorizer
from colorize_core.model.metrics import colourfulness, psnr, ssim
from colorize_core.storage.imageio import ImageDecodeError, luma_and_alpha, read_image, to_rgb_array

# Below this colourfulness a "colour" photo is effectively gray: it has no colour to recover.
MIN_TRUTH_COLOURFULNESS = 2.0


@dataclass
class Scores:
    psnr: float = 0.0
    ssim: float = 0.0
    colourfulness: float = 0.0
    colourfulness_gap: float = 0.0


@dataclass
class EvalReport:
    images: int = 0
    skipped_gray: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    model: Scores = field(default_factory=Scores)
    gray_baseline: Scores = field(default_factory=Scores)
    truth_colourfulness: float = 0.0

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _scores(pred: np.ndarray, truth: np.ndarray, truth_c: float) -> np.ndarray:
    c = colourfulness(pred)
    p = psnr(pred, truth)
    return np.array([min(p, 100.0), ssim(pred, truth), c, c - truth_c])  # cap inf PSNR for means


def evaluate(
    data: str | os.PathLike[str],
    colorizer: Colorizer,
    *,
    limit: int | None = None,
    on_image: Callable[[int, int], None] | None = None,
) -> EvalReport:
    """Mean PSNR, SSIM, colourfulness and its gap to the truth, for the model and for gray."""
    files = list_image_files(data)[:limit]
    report = EvalReport()
    model_sum, gray_sum, truth_sum = np.zeros(4), np.zeros(4), 0.0
    for i, path in enumerate(files):
        try:
            img = read_image(path)
        except ImageDecodeError as exc:
            report.failed.append((str(path), exc.reason))
            continue
        truth = to_rgb_array(img)
        truth_c = colourfulness(truth)
        if truth_c < MIN_TRUTH_COLOURFULNESS:
            report.skipped_gray += 1
            continue
        y, _ = luma_and_alpha(img.convert("RGB"))
        pred = colorizer.colorize_luma([y])[0]
        gray = np.repeat(np.round(y * 255.0).astype(np.uint8)[..., None], 3, axis=2)
        model_sum += _scores(pred, truth, truth_c)
        gray_sum += _scores(gray, truth, truth_c)
        truth_sum += truth_c
        report.images += 1
        if on_image is not None:
            on_image(i + 1, len(files))
    if report.images:
        report.model = Scores(*(model_sum / report.images).tolist())
        report.gray_baseline = Scores(*(gray_sum / report.images).tolist())
        report.truth_colourfulness = truth_sum / report.images
    return report
