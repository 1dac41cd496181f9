"""Is a photo black-and-white, whatever its paper and toning did to its pixels? One decision,
used by the archive (colorize black-and-white photos, skip real colour ones) and by dataset
building (keep only real colour photos to learn from).

A photo whose mean chroma is under `gray_chroma` is gray. Any other is fitted (fit.py: a tone
plus a stain field, and what is left) and scored by the network (net.py), trained on real colour
photos and prints aged from them: at or above its threshold it is a toned or aged print. The
thresholds are in `MonochromeThresholds`; bench/monochrome_eval.py measures the decision on a
labelled set (QUALITY.md, "Black-and-white or colour").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from colorize_core.monochrome import net
from colorize_core.monochrome.fit import GRAY_MODES, GRAYSCALE, ColourEvidence, fit, thumbnail

# Bumped when what the network reads changes without new weights (the thumbnail, the fit, the
# input's scaling): photos skipped as colour by the decision before are judged again.
INPUTS_VERSION = 1


@dataclass(frozen=True)
class MonochromeThresholds:
    """The decision's limits, in one place."""

    gray_chroma: float = 0.004  # mean chroma below this: numerically gray, no network asked
    # The network's own threshold is saved with its weights (net.LearnedDecision.threshold).


@dataclass(frozen=True)
class Verdict:
    monochrome: bool
    reason: str  # "gray: ...", "toned: ..." or "colour: ...", with the figures
    evidence: ColourEvidence
    score: float | None = None  # the network's log-odds of black-and-white; None when not asked (gray)


GRAY_IMAGE = Verdict(True, "gray: a grayscale image", GRAYSCALE)  # a grayscale mode: nothing to measure


def judge_thumbnail(thumb: np.ndarray, limits: MonochromeThresholds = MonochromeThresholds()) -> Verdict:
    """The decision on a uint8 RGB thumbnail (`fit.thumbnail`'s, longest side <= fit.THUMB)."""
    fitted = fit(thumb)
    e = fitted.evidence
    if e.mean_chroma < limits.gray_chroma:
        return Verdict(True, f"gray: mean chroma {e.mean_chroma:.4f}", e)
    learned = net.load()
    score = learned.score(fitted)
    figures = (
        f"black-and-white score {score:+.2f} (prints from {learned.threshold:+.2f}), "
        f"unexplained colour {e.unexplained * 1e4:.1f}, mean chroma {e.mean_chroma:.4f}"
    )
    if score >= learned.threshold:
        return Verdict(True, f"toned: {figures}", e, score)
    return Verdict(False, f"colour: {figures}", e, score)


def judge(img: Image.Image, limits: MonochromeThresholds = MonochromeThresholds()) -> Verdict:
    """The decision on a PIL image of any mode and size; a grayscale mode is gray without a look."""
    if img.mode in GRAY_MODES:
        return GRAY_IMAGE
    return judge_thumbnail(thumbnail(img), limits)


def decision_id(limits: MonochromeThresholds = MonochromeThresholds()) -> str:
    """Names this decision (the weights and the limits): a photo skipped as colour by another
    decision is judged again."""
    learned = net.load()
    return f"{learned.id}; inputs v{INPUTS_VERSION}; gray < {limits.gray_chroma}; prints from {learned.threshold:+.3f}"
