"""The black-and-white-or-colour decision: fit.py measures a photo's colour (a tone plus a stain
field, and what is left), net.py scores it with a small trained network, decision.py decides.
(The function `fit` is not re-exported: `colorize_core.monochrome.fit` stays the module.)"""

from colorize_core.monochrome.decision import GRAY_IMAGE, MonochromeThresholds, Verdict, decision_id, judge, judge_thumbnail
from colorize_core.monochrome.fit import GRAY_MODES, GRAYSCALE, THUMB, ColourEvidence, measure, thumbnail

__all__ = [
    "GRAY_IMAGE", "GRAY_MODES", "GRAYSCALE", "THUMB", "ColourEvidence", "MonochromeThresholds", "Verdict",
    "decision_id", "judge", "judge_thumbnail", "measure", "thumbnail",
]  # fmt: skip
