"""The `colorize` command line, as a user runs it: exit codes, outputs, messages."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from colorize_core.model import backbone
from colorize_core.model.checkpoint import read_checkpoint_info
from colorize_core.training.registry import register_model
from flows.cli import main
from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture()
def mixed_inputs(tmp_path: Path, photo_dir: Path) -> Path:
    src = tmp_path / "in"
    (src / "sub dir").mkdir(parents=True)
    for i, p in enumerate(sorted(photo_dir.iterdir())[:3]):
        Image.open(p).convert("L").save(src / f"gray_{i}.jpg", quality=95)
    Image.open(next(photo_dir.iterdir())).convert("L").save(src / "sub dir" / "élan.png")
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (src / "empty.png").write_bytes(b"")
    return src


def test_images_writes_every_good_output_and_exits_2_on_failures(
    mixed_inputs: Path, tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = main(["images", str(mixed_inputs), "-o", str(out), "--checkpoint", str(tiny_checkpoint), "--device", "cpu"])
    assert code == 2
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == ["gray_0.jpg", "gray_1.jpg", "gray_2.jpg", "sub dir/élan.png"]
    err = capsys.readouterr().err
    assert "broken.jpg" in err and "empty.png: empty file" in err
    with Image.open(out / "gray_0.jpg") as img:
        assert img.format == "JPEG" and img.mode == "RGB"


def test_images_exit_0_when_all_succeed(photo_dir: Path, tmp_path: Path, tiny_checkpoint: Path) -> None:
    files = [str(p) for p in sorted(photo_dir.iterdir())[:2]]
    assert main(["images", *files, "-o", str(tmp_path / "o"), "--checkpoint", str(tiny_checkpoint)]) == 0
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == sorted(Path(f).name for f in files)


def test_checkpoint_and_usage_errors_exit_1(tmp_path: Path, photo_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.safetensors"
    assert main(["images", str(photo_dir), "-o", str(tmp_path / "o"), "--checkpoint", str(missing)]) == 1
    assert "checkpoint not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["images", str(photo_dir)])  # no -o, no checkpoint
    assert exc.value.code == 1


def test_images_resolves_latest_through_the_registry(
    tmp_path: Path, photo_dir: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLORIZE_HOME", str(tmp_path / "home"))
    model_id = read_checkpoint_info(str(tiny_checkpoint)).model_id
    register_model(str(tiny_checkpoint), model_id)  # into $COLORIZE_HOME/registry, as `train` does
    one = sorted(photo_dir.iterdir())[0]
    assert main(["images", str(one), "-o", str(tmp_path / "out"), "--checkpoint", "latest", "--device", "cpu"]) == 0
    assert (tmp_path / "out" / one.name).is_file() and f"(model {model_id})" in capsys.readouterr().out


def test_train_then_eval_json(photo_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = tmp_path / "m.safetensors"
    args = ["train", "--data", str(photo_dir), "--out", str(ckpt), "--image-size", "32", "--batch-size", "4"]
    args += ["--steps", "3", "--backbone-weights", "none", "--optimizer", "adam", "--lr", "1e-3", "--device", "cpu"]
    assert main(args) == 0
    assert ckpt.is_file() and (tmp_path / "m_val" / "step_0000003.png").is_file()
    capsys.readouterr()
    # `train` registered it as the latest: `eval` resolves `latest` through the registry.
    assert main(["eval", "--checkpoint", "latest", "--data", str(photo_dir), "--json", "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 8 and report["failed"] == []
    assert report["model_id"] == read_checkpoint_info(str(ckpt)).model_id
    assert report["gray_baseline"]["colourfulness"] == 0.0
    assert report["truth_colourfulness"] > 10
    assert report["model"]["colourfulness_gap"] == pytest.approx(report["model"]["colourfulness"] - report["truth_colourfulness"], abs=1e-6)
    assert 0 < report["model"]["ssim"] <= 1 and report["model"]["psnr"] > 10


def test_imagenet_weights_offline_is_a_clear_error(photo_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    with socket.socket() as s:  # a port nothing listens on: this machine offline
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(backbone, "IMAGENET_URL", f"http://127.0.0.1:{port}/vgg16-397923af.pth")
    code = main(["train", "--data", str(photo_dir), "--out", str(tmp_path / "m.safetensors"), "--steps", "0", "--image-size", "32"])
    assert code == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]  # above it: the flow run's own log lines
    assert last.startswith("colorize train: error: VGG16 ImageNet weights") and "vgg16-397923af.pth" in last and "--backbone-weights none" in last


def test_train_checks_its_data_before_fetching_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    fetched: list[str] = []
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    monkeypatch.setattr(backbone, "download_imagenet_weights", lambda: fetched.append("weights") or tmp_path / "none")
    code = main(["train", "--data", str(tmp_path / "no-such-photos"), "--out", str(tmp_path / "m.safetensors"), "--steps", "1", "--image-size", "32"])
    assert code == 1
    assert "no-such-photos" in capsys.readouterr().err and fetched == []


def test_models_lists_what_train_registered(photo_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = tmp_path / "m.safetensors"
    args = ["train", "--data", str(photo_dir), "--out", str(ckpt), "--image-size", "32", "--batch-size", "2"]
    assert main([*args, "--steps", "2", "--backbone-weights", "none", "--device", "cpu"]) == 0
    model_id = capsys.readouterr().out.split("(model ")[1].split(")")[0]
    assert main(["models", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["latest"] == model_id
    entry = next(e for e in listing["models"] if e["model_id"] == model_id)
    assert entry["step"] == 2 and entry["checkpoint"] == str(ckpt) and entry["data"] == str(photo_dir)
    assert main(["models"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if model_id in line)
    assert line.split()[:4] == ["*", "m", model_id, "2"] and line.endswith(str(ckpt))


def test_console_script_help_shows_defaults() -> None:
    exe = Path(sys.executable).with_name("colorize")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "flows.cli"]
    out = subprocess.run([*cmd, "train", "--help"], capture_output=True, text=True, check=True).stdout
    out = " ".join(out.split())  # argparse wraps lines to the terminal width
    assert "--backbone-weights" in out and "default: imagenet" in out and "--image-size" in out


def test_eval_on_gray_only_folder_exits_1(tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "gray"
    d.mkdir()
    Image.fromarray(np.full((16, 16), 120, np.uint8)).save(d / "g.png")
    assert main(["eval", "--checkpoint", str(tiny_checkpoint), "--data", str(d), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["skipped_gray"] == 1


def test_shard_and_build_dataset_commands(tmp_path: Path, photo_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "archive").mkdir()
    for p in sorted(photo_dir.iterdir()):
        (tmp_path / "archive" / p.name).write_bytes(p.read_bytes())
    (tmp_path / "archive" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    manifest = tmp_path / "m.parquet"
    assert main(["shard", str(tmp_path / "archive"), "--manifest", str(manifest), "--shard-size", "4"]) == 0
    assert "9 images in 3 shards" in capsys.readouterr().out
    dest = tmp_path / "ds"
    assert main(["build-dataset", str(manifest), "--dest", str(dest), "--size", "32"]) == 2  # one failure
    captured = capsys.readouterr()
    assert "failed: broken.png" in captured.err and "9 sources -> 8 rows" in captured.out
    args = ["train", "--data", str(dest), "--out", str(tmp_path / "m.safetensors"), "--image-size", "24", "--batch-size", "4"]
    assert main([*args, "--steps", "2", "--backbone-weights", "none", "--device", "cpu"]) == 0


@pytest.mark.skipif(not (SHARED_DATA / "bw-historical").is_dir(), reason="../shared/data is absent on this machine")
def test_real_black_and_white_archive_gives_no_training_rows(tmp_path: Path) -> None:
    from colorize_core.data.build import build_dataset

    summary = build_dataset(str(SHARED_DATA / "bw-historical"), str(tmp_path / "ds"), size=64, shard_size=50)
    assert summary.sources == 41 and summary.rows == 0 and summary.failed == 0


def test_archive_command_is_incremental(tmp_path: Path, photo_dir: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "bw"
    src.mkdir()
    for p in sorted(photo_dir.iterdir())[:3]:
        Image.open(p).convert("L").save(src / p.name)
    args = ["archive", str(src), "--dest", str(tmp_path / "out"), "--checkpoint", str(tiny_checkpoint), "--device", "cpu", "--workers", "1"]
    assert main(args) == 0
    assert "3 ok, 0 failed" in capsys.readouterr().out
    (src / "new.png").write_bytes((src / "photo_0.png").read_bytes())
    assert main(args) == 0
    assert "1 ok, 0 failed, 0 skipped as colour, 3 already done" in capsys.readouterr().out


def test_status_reports_latest_outcomes_runs_and_what_still_fails(tmp_path: Path, photo_dir: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src, out = tmp_path / "bw", tmp_path / "out"
    src.mkdir()
    for p in sorted(photo_dir.iterdir())[:2]:
        Image.open(p).convert("L").save(src / p.name)
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    assert main(["status", str(out)]) == 1  # nothing yet
    capsys.readouterr()
    args = ["archive", str(src), "--dest", str(out), "--checkpoint", str(tiny_checkpoint), "--device", "cpu", "--workers", "1"]
    assert main(args) == 2
    (src / "broken.jpg").write_bytes((src / sorted(p.name for p in src.iterdir() if p.suffix == ".png")[0]).read_bytes())
    assert main(args) == 0  # the repaired file is colorized by the second run
    capsys.readouterr()
    assert main(["status", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["sources"] == 3 and summary["latest"] == {"ok": 3} and summary["failing"] == []
    assert [r["counts"] for r in summary["runs"]] == [{"ok": 1}, {"ok": 2, "failed": 1}]  # newest first
    (src / "gone.png").write_bytes(b"")
    assert main(args) == 2
    capsys.readouterr()
    assert main(["status", str(out)]) == 2  # a source still fails
    text = capsys.readouterr().out
    assert "4 sources; latest outcome: failed 1, ok 3" in text and "gone.png: empty file" in text
