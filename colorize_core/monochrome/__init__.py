"""The black-and-white-or-colour decision: fit.py measures a photo's colour (a tone plus a stain
field, and what is left), net.py scores it with a small trained network, decision.py decides."""

from colorize_core.monochrome.decision import MonochromeThresholds, Verdict, decision_id, judge, judge_thumbnail
from colorize_core.monochrome.fit import GRAY_MODES, GRAYSCALE, THUMB, ColourEvidence, fit, measure, thumbnail

__all__ = [
    "GRAY_MODES", "GRAYSCALE", "THUMB", "ColourEvidence", "MonochromeThresholds", "Verdict",
    "decision_id", "fit", "judge", "judge_thumbnail", "measure", "thumbnail",
]  # fmt: skip
