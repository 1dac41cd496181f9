"""Evaluation: desaturate colour photos, colorize them, compare with the originals at their own
resolution, against the "do nothing" baseline of leaving them gray.

Besides PSNR, SSIM and colourfulness, each side gets chroma accuracy in CIE Lab (see
`colorize_core.model.metrics`): `auc`, the mean over photos of Zhang et al.'s (2016) per-photo AuC
of the ab-error curve (thresholds 0-150); `border_error` and `interior_error`, the means over photos
of the mean ab error in the 8 px band along the edges and inside it; and `border_ratio`, the ratio
of those two means (well above 1: coloured fringes along the borders).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np

from colorize_core.data.dataset import list_image_files
from colorize_core.model.infer import Colorizer
from colorize_core.model.metrics import chroma_scores, colourfulness, psnr, ssim
from colorize_core.storage.imageio import ImageDecodeError, luma_and_alpha, read_image, to_rgb_array

# Below this colourfulness a "colour" photo is effectively gray: it has no colour to recover.
MIN_TRUTH_COLOURFULNESS = 2.0
# `border_ratio` is capped here (like PSNR at 100 dB) so that the report stays finite, valid JSON.
MAX_BORDER_RATIO = 1000.0


@dataclass
class Scores:
    psnr: float = 0.0
    ssim: float = 0.0
    colourfulness: float = 0.0
    colourfulness_gap: float = 0.0
    auc: float = 0.0  # mean per-photo AuC of the ab-error curve, 0-1 (1: every pixel's ab exact)
    border_error: float = 0.0  # mean ab error in the 8 px band along the edges (Lab units)
    interior_error: float = 0.0  # mean ab error inside that band
    border_ratio: float = 0.0  # border_error / interior_error (1: no worse at the borders)


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


# The figures averaged over photos; the border ratio is made from the averages, not averaged.
AVERAGED = tuple(f.name for f in fields(Scores) if f.name != "border_ratio")


def _scores(pred: np.ndarray, truth: np.ndarray, truth_c: float) -> Scores:
    """One photo's figures (all but the ratio)."""
    c = colourfulness(pred)
    chroma = chroma_scores(pred, truth)
    return Scores(
        psnr=min(psnr(pred, truth), 100.0),  # capped: an exact match's infinite PSNR would swamp the mean
        ssim=ssim(pred, truth),
        colourfulness=c,
        colourfulness_gap=c - truth_c,
        auc=chroma.auc,
        border_error=chroma.border.border,
        interior_error=chroma.border.interior,
    )


def _plus(total: Scores, photo: Scores) -> Scores:
    return Scores(**{name: getattr(total, name) + getattr(photo, name) for name in AVERAGED})


def _mean_scores(total: Scores, n: int) -> Scores:
    mean = Scores(**{name: getattr(total, name) / n for name in AVERAGED})
    border, interior = mean.border_error, mean.interior_error
    ratio = border / interior if interior > 0 else (1.0 if border == 0 else MAX_BORDER_RATIO)
    return replace(mean, border_ratio=min(ratio, MAX_BORDER_RATIO))


def evaluate(
    data: str | os.PathLike[str],
    colorizer: Colorizer,
    *,
    limit: int | None = None,
    on_image: Callable[[int, int], None] | None = None,
) -> EvalReport:
    """Mean PSNR, SSIM, colourfulness and its gap to the truth, ab-error AuC and border / interior
    ab error, for the model and for gray (a prediction with a* = b* = 0 everywhere)."""
    files = list_image_files(data)[:limit]
    report = EvalReport()
    model_sum, gray_sum, truth_sum = Scores(), Scores(), 0.0
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
        model_sum = _plus(model_sum, _scores(pred, truth, truth_c))
        gray_sum = _plus(gray_sum, _scores(gray, truth, truth_c))
        truth_sum += truth_c
        report.images += 1
        if on_image is not None:
            on_image(i + 1, len(files))
    if report.images:
        report.model = _mean_scores(model_sum, report.images)
        report.gray_baseline = _mean_scores(gray_sum, report.images)
        report.truth_colourfulness = truth_sum / report.images
    return report
