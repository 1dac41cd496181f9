"""Wrong arguments are refused before anything starts (no Prefect server, no model): at once,
in one line in the command's own words, with exit status 1 whatever the command."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows import local_server
from flows.cli import main
from flows.preflight import MIN_SAMPLE_SIZE, MIN_WORKING_SIZE


@pytest.fixture(autouse=True)
def no_server(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse() -> None:
        raise AssertionError("a Prefect server was started for arguments that cannot work")

    monkeypatch.setattr(local_server, "start_temporary_server", refuse)


@pytest.fixture()
def src(tmp_path: Path, photo_dir: Path) -> Path:
    folder = tmp_path / "bw"
    folder.mkdir()
    (folder / "a.png").write_bytes((photo_dir / "photo_0.png").read_bytes())
    return folder


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the command; it must exit 1 within a moment with one line on stderr; returns it."""
    capsys.readouterr()
    started = time.monotonic()
    code = main(argv)
    seconds = time.monotonic() - started
    captured = capsys.readouterr()
    assert code == 1, captured
    assert seconds < 3, seconds  # measured: about 1 ms in process, 0.1 s as a command
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"colorize {argv[0]}: error: "), captured.err
    return lines[0]


def test_missing_data_folders_in_each_commands_words(tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nope = str(tmp_path / "nope")
    line = _refused(["train", "--data", nope, "--out", str(tmp_path / "m.safetensors")], capsys)
    assert f"training data not found: {nope}" in line
    line = _refused(["eval", "--data", nope, "--checkpoint", str(tiny_checkpoint)], capsys)
    assert line.endswith(f"evaluation photos folder not found: {nope}")
    assert f"colour photos folder not found: {nope}" in _refused(["build-dataset", nope, "--dest", str(tmp_path / "ds")], capsys)
    assert f"manifest not found: {nope}.parquet" in _refused(["build-dataset", nope + ".parquet", "--dest", str(tmp_path / "ds")], capsys)
    assert _refused(["shard", nope, "--manifest", str(tmp_path / "m.parquet")], capsys).endswith(f"archive not found: {nope}")
    assert _refused(["archive", nope, "--dest", str(tmp_path / "out")], capsys).endswith(f"archive not found: {nope}")
    assert _refused(["status", nope], capsys).endswith(f"destination not found: {nope}")


def test_a_missing_checkpoint_is_refused_by_every_command(src: Path, tmp_path: Path, photo_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    nope = str(tmp_path / "nope.safetensors")
    for argv in (
        ["archive", str(src), "--dest", str(tmp_path / "out"), "--checkpoint", nope],
        ["images", str(src), "-o", str(tmp_path / "out"), "--checkpoint", nope],
        ["eval", "--data", str(photo_dir), "--checkpoint", nope],
    ):
        assert _refused(argv, capsys).endswith(f"checkpoint not found: {nope}")
    monkeypatch.delenv("COLORIZE_CHECKPOINT", raising=False)
    monkeypatch.setenv("COLORIZE_HOME", str(tmp_path / "empty-home"))  # `latest` resolves through an empty registry
    assert "no model registered in" in _refused(["archive", str(src), "--dest", str(tmp_path / "out")], capsys)
    monkeypatch.setenv("COLORIZE_CHECKPOINT", nope)  # every command's default, archive's too
    for argv in (["archive", str(src), "--dest", str(tmp_path / "out")], ["images", str(src), "-o", str(tmp_path / "out")]):
        assert _refused(argv, capsys).endswith(f"checkpoint not found: {nope}")


def test_a_destination_in_its_source_is_refused(src: Path, tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = ["--checkpoint", str(tiny_checkpoint)]
    assert "is the source" in _refused(["archive", str(src), "--dest", str(src), *ckpt], capsys)
    assert "is inside the source" in _refused(["archive", str(src), "--dest", str(src / "colorized"), *ckpt], capsys)
    assert "is inside the source" in _refused(["archive", "s3://b/bw", "--dest", "s3://b/bw/colorized", *ckpt], capsys)
    # A source inside the destination: the output of its key `bw/a.png` would overwrite it.
    assert f"holds the source {src}" in _refused(["archive", str(src), "--dest", str(src.parent), *ckpt], capsys)
    assert "holds the source" in _refused(["archive", "s3://b/dest/bw", "--dest", "s3://b/dest", *ckpt], capsys)
    assert "is the source" in _refused(["images", str(src), "-o", str(src), *ckpt], capsys)
    line = _refused(["images", str(src / "a.png"), "-o", str(src), *ckpt], capsys)
    assert "would overwrite it" in line


def test_a_missing_input_is_a_usage_error_for_images_too(src: Path, tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nope = str(tmp_path / "nope.png")
    line = _refused(["images", str(src), nope, "-o", str(tmp_path / "out"), "--checkpoint", str(tiny_checkpoint)], capsys)
    assert line.endswith(f"input not found: {nope}")
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_sizes_out_of_range(src: Path, tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = _refused(["build-dataset", str(src), "--dest", str(tmp_path / "ds"), "--size", "7"], capsys)
    assert f"--size 7 is out of range: it must be at least {MIN_SAMPLE_SIZE}" in line
    assert "--shard-size 0 is out of range" in _refused(["build-dataset", str(src), "--dest", str(tmp_path / "ds"), "--shard-size", "0"], capsys)
    line = _refused(["train", "--data", str(src), "--out", str(tmp_path / "m.safetensors"), "--image-size", "30"], capsys)
    assert "--image-size 30 is out of range" in line
    assert "steps must be >= 0" in _refused(["train", "--data", str(src), "--out", str(tmp_path / "m.safetensors"), "--steps", "-1"], capsys)
    archive = ["archive", str(src), "--dest", str(tmp_path / "out"), "--checkpoint", str(tiny_checkpoint)]
    assert "--shard-size 0 is out of range" in _refused([*archive, "--shard-size", "0"], capsys)
    assert "--workers 0 is out of range" in _refused([*archive, "--workers", "0"], capsys)
    assert "--time-limit -1.0 is out of range: it must be at least 0.01 hours" in _refused([*archive, "--time-limit", "-1"], capsys)
    assert "--pool-workers 0 is out of range" in _refused([*archive, "--pool-workers", "0"], capsys)
    assert "--image-size 12 is out of range" in _refused(["demo", "--image-size", "12"], capsys)


def test_the_smallest_sample_holds_the_smallest_training_crop() -> None:
    from colorize_core.data.dataset import CONTEXT
    from colorize_core.model.config import ModelConfig

    assert MIN_SAMPLE_SIZE == round(MIN_WORKING_SIZE * CONTEXT)  # what training reads a sample at
    ModelConfig(image_size=MIN_WORKING_SIZE)  # the smallest size the model takes
    with pytest.raises(ValueError):
        ModelConfig(image_size=MIN_WORKING_SIZE - 4)


def test_refused_at_once_as_a_real_command(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("colorize")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "flows.cli"]
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home")}  # a server would create it
    started = time.monotonic()
    result = subprocess.run([*cmd, "train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "m.safetensors")], capture_output=True, text=True, env=env)
    seconds = time.monotonic() - started
    assert result.returncode == 1 and result.stderr.startswith("colorize train: error: training data not found")
    assert seconds < 3, seconds  # measured: 0.1 s (it was 22 s: the temporary server started first)
    assert not (tmp_path / "prefect-home").exists()


def test_a_check_that_cannot_be_made_is_one_line_too(src: Path, tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from colorize_core.storage.objects import StorageError
    from colorize_core.training import registry

    line = _refused(["archive", str(src), "--dest", "gs://b/x", "--checkpoint", str(tiny_checkpoint)], capsys)
    assert "gs://b/x" in line

    def unreachable(spec: str, **kwargs: object) -> str:
        raise StorageError("s3://home/registry: cannot read 'latest.json': connection refused\nmore detail")

    monkeypatch.setenv("COLORIZE_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(registry, "resolve_checkpoint", unreachable)
    line = _refused(["archive", str(src), "--dest", str(tmp_path / "out")], capsys)
    log = tmp_path / "home" / "logs" / "colorize.log"
    assert line == f"colorize archive: error: s3://home/registry: cannot read 'latest.json': connection refused (details: {log})"
    assert "Traceback" in log.read_text() and "more detail" in log.read_text()
