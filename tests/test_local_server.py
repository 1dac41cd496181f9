"""The temporary Prefect server's own output goes to its log file, never to the terminal; it
sends no telemetry unless the user chose to."""

from __future__ import annotations

import os
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


@pytest.mark.slow  # it imports Prefect's server package (~4 s), which no other fast test needs
@pytest.mark.parametrize("users_choice", [None, "true"])
def test_the_temporary_server_starts_without_telemetry_unless_the_user_chose(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, users_choice: str | None) -> None:
    """Prefect's server analytics are off in the temporary server's own environment, and this
    process's environment is not written; a user's own PREFECT_SERVER_ANALYTICS_ENABLED wins."""
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_SERVER_ANALYTICS_ENABLED, temporary_settings

    monkeypatch.setenv("COLORIZE_HOME", str(tmp_path))
    # Prefect read its settings from the environment when it was first imported: what a user set
    # is in both (setenv + updates); unset is Prefect's default there (restore_defaults).
    if users_choice is None:
        monkeypatch.delenv(local_server.ANALYTICS, raising=False)
        prefect_sees = temporary_settings(restore_defaults={PREFECT_SERVER_ANALYTICS_ENABLED})
    else:
        monkeypatch.setenv(local_server.ANALYTICS, users_choice)
        prefect_sees = temporary_settings(updates={PREFECT_SERVER_ANALYTICS_ENABLED: users_choice == "true"})
    started: list[dict[str, str]] = []

    def record(*args: object, env: dict[str, str], **kwargs: object) -> object:
        started.append(env)
        return None

    monkeypatch.setattr(subprocess, "Popen", record)
    saved = dict(SubprocessASGIServer._instances)
    SubprocessASGIServer._instances.clear()  # another test's plain server would be handed back instead
    try:
        server = local_server._quiet_server()
        assert type(server).__name__ == "QuietServer"
        server.port = 1  # never started: only the command's environment is looked at
        with prefect_sees:
            server._run_uvicorn_command()
    finally:
        SubprocessASGIServer._instances.clear()
        SubprocessASGIServer._instances.update(saved)
    assert started[0][local_server.ANALYTICS].lower() == (users_choice or "false")
    assert os.environ.get(local_server.ANALYTICS) == users_choice
