"""The temporary Prefect server's own output goes to its log file, never to the terminal."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from flows import local_server


def test_a_child_started_inside_writes_to_the_log_and_ours_comes_back(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "logs" / "prefect-server.log"
    with local_server._output_to(log):
        child = subprocess.Popen([sys.executable, "-c", "import sys; print('served'); print('Traceback: cancelled', file=sys.stderr)"])
    print("colorize archive: stopped")
    child.wait(timeout=30)
    captured = capfd.readouterr()
    assert "cancelled" not in captured.err and "served" not in captured.out, captured
    assert captured.out == "colorize archive: stopped\n"
    assert log.read_text().splitlines() == ["served", "Traceback: cancelled"]


def test_the_server_log_sits_beside_the_commands_log(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("COLORIZE_HOME", str(tmp_path))
    assert local_server.server_log_path() == tmp_path / "logs" / "prefect-server.log"


def test_a_log_folder_that_cannot_be_written_sends_the_output_nowhere(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "logs"
    blocker.write_text("a file where the log folder should be")
    with local_server._output_to(blocker / "prefect-server.log"):
        child = subprocess.Popen([sys.executable, "-c", "import sys; print('Traceback: cancelled', file=sys.stderr)"])
    child.wait(timeout=30)
    assert "cancelled" not in capfd.readouterr().err
