"""evaluate's chroma fields: AuC of the ab-error curve and the border / interior ab error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from colorize_core.data.dataset import list_image_files
from colorize_core.evaluate import Scores, evaluate
from colorize_core.model.infer import Colorizer
from colorize_core.model.metrics import chroma_scores
from colorize_core.storage.imageio import luma_and_alpha, read_image, to_rgb_array

NEW_FIELDS = ("auc", "border_error", "interior_error", "border_ratio")


def test_report_has_chroma_fields_for_model_and_gray(photo_dir: Path, tiny_checkpoint: Path) -> None:
    report = evaluate(photo_dir, Colorizer.from_checkpoint(tiny_checkpoint, device="cpu"), limit=3)
    assert report.images == 3
    d = json.loads(json.dumps(report.to_dict(), allow_nan=False))  # strict JSON: nothing infinite
    for side in ("model", "gray_baseline"):
        s = d[side]
        assert list(s)[:4] == ["psnr", "ssim", "colourfulness", "colourfulness_gap"]  # old keys kept, first
        assert all(isinstance(s[k], float) for k in NEW_FIELDS)
        assert 0.0 < s["auc"] < 1.0
        assert s["border_error"] > 0 and s["interior_error"] > 0
        assert s["border_ratio"] == pytest.approx(s["border_error"] / s["interior_error"])

    # The gray baseline by hand: the mean over the photos of each one's scores against gray.
    per_photo = []
    for path in list_image_files(photo_dir)[:3]:
        img = read_image(path)
        truth = to_rgb_array(img)
        y, _ = luma_and_alpha(img.convert("RGB"))
        gray = np.repeat(np.round(y * 255.0).astype(np.uint8)[..., None], 3, axis=2)
        c = chroma_scores(gray, truth)
        per_photo.append((c.auc, c.border.border, c.border.interior))
    auc, border, interior = np.mean(per_photo, axis=0)
    g = report.gray_baseline
    assert g.auc == pytest.approx(auc) and g.border_error == pytest.approx(border) and g.interior_error == pytest.approx(interior)


def test_empty_report_defaults_are_zero() -> None:
    assert all(getattr(Scores(), k) == 0.0 for k in NEW_FIELDS)
