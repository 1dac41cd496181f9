"""What an operator meets before any flow runs: help that tells the truth, and a model that
never trained refused."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from colorize_core.model.checkpoint import save_checkpoint
from colorize_core.model.models import ModelConfig, build_model
from flows.cli import build_parser, main


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _help(parser: argparse.ArgumentParser) -> str:
    return " ".join(parser.format_help().split())  # argparse wraps to the terminal's width


def test_help_has_no_none_defaults_and_no_doubled_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLORIZE_CHECKPOINT", "/models/m.safetensors")
    parser = build_parser()
    commands = _subparsers(parser)
    assert {"images", "archive", "models", "status", "train", "demo"} <= set(commands)
    for name, sub in commands.items():
        assert "(default: None)" not in _help(sub), name
        formatter = sub._get_formatter()
        for action in sub._actions:
            shown = formatter._expand_help(action) if action.help else ""
            assert shown.count("default") <= 1, f"{name} {action.option_strings}: {shown}"
            if action.required:
                assert "default" not in shown, f"{name} {action.option_strings}: required, yet a default shown"
    assert "default: $COLORIZE_CHECKPOINT)" in _help(commands["images"])
    assert "(default: 8 on CPU, 64 on CUDA)" in _help(commands["archive"])
    assert "(default: 500 on CPU, 10,000 on CUDA or a work pool)" in _help(commands["archive"])
    assert "$COLORIZE_CHECKPOINT when set (default: /models/m.safetensors)" in " ".join(_help(commands["archive"]).split())
    monkeypatch.delenv("COLORIZE_CHECKPOINT")
    assert "(default: latest)" in _help(_subparsers(build_parser())["archive"])


def test_help_says_where_colorize_home_is_and_every_exit_status(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLORIZE_HOME", str(tmp_path / "home"))
    text = _help(build_parser())
    assert f"$COLORIZE_HOME ({tmp_path / 'home'} here)" in text and "colorize models" in text
    for status in ("0 done", "1 error", "2 some inputs failed", "75 destination busy", "130 stopped by SIGINT", "143 stopped by SIGTERM"):
        assert status in text


def test_models_on_an_empty_registry_says_how_one_gets_there(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COLORIZE_HOME", str(tmp_path / "home"))
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path / "home" / "registry") in out and "colorize train" in out


@pytest.fixture
def untrained_checkpoint(tmp_path: Path) -> Path:
    """What `colorize train --steps 0` writes: a model that never saw a photo."""
    torch.manual_seed(0)
    path = tmp_path / "untrained.safetensors"
    save_checkpoint(path, build_model(ModelConfig(image_size=32), backbone_weights="none"), meta={"step": 0})
    return path


def test_an_untrained_model_is_refused_unless_asked_for(tmp_path: Path, untrained_checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in"
    src.mkdir()
    Image.new("L", (24, 16), 90).save(src / "a.png")
    args = ["images", str(src), "-o", str(tmp_path / "out"), "--checkpoint", str(untrained_checkpoint), "--device", "cpu"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "never trained (0 steps)" in err and "--allow-untrained" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
    assert main([*args, "--allow-untrained"]) == 0
    assert (tmp_path / "out" / "a.png").is_file()


def test_images_labels_its_outputs_unless_told_not_to(tmp_path: Path, tiny_checkpoint: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    Image.new("L", (24, 16), 90).save(src / "a.jpg")
    base = ["images", str(src), "--checkpoint", str(tiny_checkpoint), "--device", "cpu"]
    assert main([*base, "-o", str(tmp_path / "labelled")]) == 0
    assert main([*base, "-o", str(tmp_path / "bare"), "--no-label"]) == 0
    with Image.open(tmp_path / "labelled" / "a.jpg") as img:
        xmp = img.info.get("xmp", b"")
        assert b"compositeWithTrainedAlgorithmicMedia" in xmp and b"a.jpg" in xmp
    with Image.open(tmp_path / "bare" / "a.jpg") as img:
        assert "xmp" not in img.info


def test_every_exit_status_is_in_the_help_and_the_readme() -> None:
    """One table (flows/exits.py): the help is made from it, the README's table must list each."""
    from flows.exits import EXIT_STATUSES, exit_status_help

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = readme[readme.index("Exit statuses:") :].split("\n\n")[1]
    listed = {int(code) for row in table.splitlines()[2:] for code in row.split("|")[1].replace(" ", "").split("/")}
    assert listed == {status for status, _ in EXIT_STATUSES}
    assert all(f"{status} {meaning}" in exit_status_help() for status, meaning in EXIT_STATUSES)


def test_python_warnings_go_to_the_log_file_not_the_terminal(tmp_path: Path) -> None:
    """A library's deprecation notes are details: in the log file; --verbose shows them."""
    code = (
        "import sys, warnings\n"
        "from flows.logs import setup_logging\n"
        "setup_logging(sys.argv[1] == 'verbose', with_prefect=False)\n"
        "warnings.warn('trace is deprecated', FutureWarning)\n"
    )
    env = {**os.environ, "COLORIZE_HOME": str(tmp_path)}
    quiet = subprocess.run([sys.executable, "-c", code, "quiet"], capture_output=True, text=True, env=env, check=True, timeout=60)
    assert quiet.stderr == "" and quiet.stdout == ""
    assert "FutureWarning: trace is deprecated" in (tmp_path / "logs" / "colorize.log").read_text()
    verbose = subprocess.run([sys.executable, "-c", code, "verbose"], capture_output=True, text=True, env=env, check=True, timeout=60)
    assert "FutureWarning: trace is deprecated" in verbose.stderr


@pytest.mark.slow  # a subprocess that converts a model to int8: make test only
def test_the_int8_conversion_prints_nothing_but_our_lines(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """torch.jit's tracer warnings and torch's 'No CUDA runtime is found' used to reach the
    operator's terminal while the model was converted."""
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    src = tmp_path / "in"
    src.mkdir()
    Image.new("L", (24, 16), 90).save(src / "a.png")
    env = {**os.environ, "COLORIZE_HOME": str(tmp_path / "home"), "COLORIZE_CPU_PATH": "int8"}
    args = [sys.executable, "-m", "flows.cli", "images", str(src), "-o", str(tmp_path / "out"), "--checkpoint", str(tiny_checkpoint), "--device", "cpu"]
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert any("to int8" in line for line in lines)  # the conversion ran
    assert all(line.startswith(("INFO colorize_core", "colorize: ")) for line in lines), lines
