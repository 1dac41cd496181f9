"""bench/train_monochrome.py end to end on a tiny labelled folder this test makes: the weights it
saves load as the decision's network, with the threshold and the figures it chose. (The real
training, on ../shared/data, is the benchmark's: QUALITY.md.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench import train_monochrome
from colorize_core.monochrome import net, thumbnail
from colorize_core.monochrome.fit import fit
from tests.test_monochrome import gray_scene, muted_colour_scene


def _labelled_folder(root: Path) -> Path:
    rng = np.random.default_rng(5)
    (root / "photos-train").mkdir(parents=True)
    (root / "photos-val" / "train").mkdir(parents=True)
    (root / "bw-historical").mkdir()
    for i in range(8):
        Image.fromarray(muted_colour_scene(rng, float(rng.uniform(0, 360)))).save(root / "photos-train" / f"n{i:08d}_thing.JPEG", quality=90)
    Image.fromarray(gray_scene(rng)).save(root / "photos-train" / "n99999999_gray.JPEG", quality=90)  # ImageNet's own black-and-white
    for i in range(2):
        Image.fromarray(muted_colour_scene(rng, float(rng.uniform(0, 360)))).save(root / "photos-val" / "train" / f"{i}.jpg", quality=90)
    return root


def test_training_saves_weights_the_decision_loads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _labelled_folder(tmp_path / "data")
    out = tmp_path / "weights.pt"
    assert train_monochrome.main(["--data", str(data), "--out", str(out), "--epochs", "2", "--prints", "1", "--crops", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    # ImageNet's even files: 4 colour photos and the gray one (its own black-and-white); Berkeley's
    # train/: 2. Each colour photo, its tune print, 1 more print and 1 crop (6 x 4), the gray one.
    assert "25 examples" in report["trained_on"]
    learned = net.load.__wrapped__(out)  # not the process's cached default
    assert learned.threshold == pytest.approx(report["threshold"]) and np.isfinite(learned.threshold)
    assert learned.about["cross_validated"]["colour photos taken for black-and-white"].endswith("/6")
    assert learned.id.startswith("bw-net ") and learned.id != net.load().id
    photo = fit(thumbnail(Image.open(data / "photos-train" / "n00000000_thing.JPEG")))
    assert learned.score(photo) == learned.score(photo)  # inference: no state changes between calls
    saved = torch.load(out, weights_only=True)
    assert all(torch.equal(saved["state_dict"][k], v) for k, v in learned.net.state_dict().items())


def test_training_without_the_labelled_photos_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert train_monochrome.main(["--data", str(tmp_path), "--out", str(tmp_path / "w.pt")]) == 1
    assert "training needs ../shared/data" in capsys.readouterr().err
    assert not (tmp_path / "w.pt").exists()


def test_damaged_weights_are_one_line_that_says_what_to_do(tmp_path: Path) -> None:
    bad = tmp_path / "weights.pt"
    bad.write_bytes(b"not a weights file")
    with pytest.raises(RuntimeError, match=r"weights .*weights\.pt cannot be read \(UnpicklingError\); reinstall archive-colorizer$") as damaged:
        net.load.__wrapped__(bad)
    with pytest.raises(RuntimeError, match=r"missing\.pt cannot be read \(No such file or directory\)") as missing:
        net.load.__wrapped__(tmp_path / "missing.pt")
    assert "\n" not in str(damaged.value) + str(missing.value)
