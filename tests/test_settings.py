"""Every environment variable is read in one place (colorize_core/settings.py), with its default
and its checks, and the README's table says the same."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from colorize_core import settings as settings_module
from colorize_core.settings import VARIABLES, Settings, SettingsError
from flows.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_and_values() -> None:
    got = Settings.from_env({})
    assert got.home == Path.home() / ".colorize" and got.checkpoint is None and got.retry_seconds == 300.0 and got.cpu_path == "auto"
    assert (got.serve_source, got.serve_dest, got.serve_photos, got.serve_dataset) == ("archive", "colorized", "photos", "dataset")
    assert got.serve_checkpoint == "models/model.safetensors" and got.cpu_calibration is None
    assert (got.c2pa_cert, got.c2pa_key, got.c2pa_tsa) == (None, None, None)
    env = {
        "COLORIZE_HOME": "/srv/colorize", "COLORIZE_CHECKPOINT": "s3://m/model.safetensors", "COLORIZE_RETRY_SECONDS": "12.5",
        "COLORIZE_CPU_PATH": " INT8 ", "COLORIZE_CPU_CALIBRATION": "/photos", "COLORIZE_SOURCE": "s3://bw", "COLORIZE_DEST": "s3://out",
        "COLORIZE_PHOTOS": "s3://colour", "COLORIZE_DATASET": "s3://ds", "COLORIZE_CHECKPOINT_URI": "s3://m/next.safetensors",
        "COLORIZE_C2PA_CERT": "/keys/chain.pem", "COLORIZE_C2PA_KEY": "/keys/signer.key", "COLORIZE_C2PA_TSA": "http://tsa.example",
    }  # fmt: skip
    got = Settings.from_env(env)
    assert got == Settings(
        Path("/srv/colorize"), "s3://m/model.safetensors", 12.5, "int8", "/photos", "s3://bw", "s3://out", "s3://colour", "s3://ds", "s3://m/next.safetensors",
        "/keys/chain.pem", "/keys/signer.key", "http://tsa.example",
    )
    # An empty value (a compose file's `COLORIZE_CHECKPOINT=`) is unset, not a model named "".
    assert Settings.from_env({name: "" for name in env}) == Settings.from_env({})


@pytest.mark.parametrize("value", ["5m", "-1", "nan", "inf", "1e999"])
def test_a_value_that_cannot_be_used_names_its_variable(value: str) -> None:
    with pytest.raises(SettingsError, match=rf"^COLORIZE_RETRY_SECONDS={re.escape(repr(value))}"):
        Settings.from_env({"COLORIZE_RETRY_SECONDS": value})


def test_the_command_line_stops_on_a_bad_value_in_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    monkeypatch.setenv("COLORIZE_RETRY_SECONDS", "5m")
    assert main(["status", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err == "colorize: error: COLORIZE_RETRY_SECONDS='5m' is not a number of seconds\n"


def test_the_environment_gives_the_command_line_its_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.cli import build_parser

    env = Settings.from_env({"COLORIZE_CHECKPOINT": "m.safetensors", "COLORIZE_SOURCE": "s3://bw", "COLORIZE_CHECKPOINT_URI": "out.safetensors"})
    parser = build_parser(env)
    assert parser.parse_args(["archive", "a", "--dest", "b"]).checkpoint == "m.safetensors"
    assert parser.parse_args(["images", "x", "-o", "y"]).checkpoint == "m.safetensors"  # not required when set
    serve = parser.parse_args(["serve"])
    assert (serve.source, serve.checkpoint) == ("s3://bw", "out.safetensors")
    assert build_parser(Settings.from_env({})).parse_args(["archive", "a", "--dest", "b"]).checkpoint == "latest"


def _readme_rows() -> list[tuple[str, str, str, str]]:
    text = (ROOT / "README.md").read_text()
    start = text.index("| variable | default | what it sets | read by |")
    rows = []
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        name, default, meaning, read_by = (cell.strip() for cell in line.strip("|").split(" | "))
        rows.append((name.strip("`"), default, meaning, read_by))
    return rows


def test_the_readme_table_is_the_variables() -> None:
    assert _readme_rows() == [(v.name, v.default, v.meaning, v.read_by) for v in VARIABLES]


def test_no_module_reads_a_colorize_variable_but_settings() -> None:
    """os.environ / os.getenv with a COLORIZE_ name (a literal) anywhere else would be a second
    place that reads it, with its own default."""
    names = {v.name for v in VARIABLES}
    assert {value for key, value in vars(settings_module).items() if key.isupper() and isinstance(value, str) and value.startswith("COLORIZE_")} == names
    offenders = []
    for path in [*(ROOT / "colorize_core").rglob("*.py"), *(ROOT / "flows").rglob("*.py")]:
        if path.name == "settings.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value}")
    assert offenders == []
