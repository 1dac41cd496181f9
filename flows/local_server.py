"""The temporary Prefect server a flow command uses when no `PREFECT_API_URL` is set.

Prefect starts one itself on first use, but gives it 20 s (a first start migrates a fresh
database, which takes longer on a 2-core machine) and leaves it running if this process is
killed (SIGKILL: no atexit). Here it is started up front, through Prefect's own
`SubprocessASGIServer` (the instance Prefect's clients then reuse), with a startup timeout long
enough for a first start (`PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS` wins when the user
set it), and a watchdog process that stops the server when this process dies, however it dies.
The server's own output goes to its log file, not to the terminal: stopped by a signal, it can
print a traceback (a cancelled message consumer) after the command's last line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flows.logs import log_path

STARTUP_TIMEOUT_S = 180
ANALYTICS = "PREFECT_SERVER_ANALYTICS_ENABLED"
log = logging.getLogger(__name__)

# The watchdog: reads its stdin until EOF, which comes when the parent's end of the pipe closes
# (exit, crash or SIGKILL alike), then stops the server if it is still the process it started as.
_WATCHDOG = r"""
import os, signal, sys, time
pid, marker = int(sys.argv[1]), sys.argv[2]
sys.stdin.buffer.read()
def alive():
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return marker.encode() in f.read()
    except OSError:
        return False
if alive():
    os.kill(pid, signal.SIGTERM)
    for _ in range(50):
        time.sleep(0.1)
        if not alive():
            break
    else:
        os.kill(pid, signal.SIGKILL)
"""


def server_log_path() -> Path:
    """Where the temporary server's own output goes (beside the command's log)."""
    return log_path().with_name("prefect-server.log")


@contextlib.contextmanager
def _output_to(path: Path) -> Iterator[None]:
    """Points this process's stdout and stderr at `path` while a child is started, so the child
    inherits the file (Prefect starts it with no redirection of its own); restored after. A log
    folder that cannot be written (a read-only home) sends the output nowhere rather than fail."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        target = open(path, "ab")
    except OSError:
        target = open(os.devnull, "wb")
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with target:
            os.dup2(target.fileno(), 1)
            os.dup2(target.fileno(), 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


def uses_temporary_server() -> bool:
    """True when Prefect would run a temporary server for this process (no API URL set)."""
    from prefect.settings import get_current_settings

    return not get_current_settings().api.url


def _no_telemetry() -> contextlib.AbstractContextManager[Any]:
    """This machine-local tool phones nowhere: the temporary server starts with Prefect's
    server analytics off (Prefect hands the current settings to the server's environment),
    unless the user set PREFECT_SERVER_ANALYTICS_ENABLED themselves. A setting for the server
    process alone: this process's environment is left as it is."""
    if ANALYTICS in os.environ:
        return contextlib.nullcontext()
    from prefect.settings import PREFECT_SERVER_ANALYTICS_ENABLED, temporary_settings

    return temporary_settings(updates={PREFECT_SERVER_ANALYTICS_ENABLED: False})


def _quiet_server() -> Any:
    """Prefect's `SubprocessASGIServer`, registered as the instance its clients reuse, whose
    server process writes to `server_log_path()`."""
    from prefect.server.api.server import SubprocessASGIServer

    class QuietServer(SubprocessASGIServer):
        def _run_uvicorn_command(self) -> subprocess.Popen[Any]:
            with _output_to(server_log_path()), _no_telemetry():
                return super()._run_uvicorn_command()

    return QuietServer()  # SubprocessASGIServer() now returns this instance (one per port)


class TemporaryServer:
    """Prefect's temporary server, started now, and its watchdog process."""

    def __init__(self) -> None:
        timeout = int(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS") or STARTUP_TIMEOUT_S)
        self.server = _quiet_server()
        try:
            self.server.start(timeout=timeout)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc} (its output: {server_log_path()})") from exc
        process = self.server.server_process
        self.watchdog: subprocess.Popen[bytes] | None = None
        if process is not None and sys.platform.startswith("linux"):  # elsewhere: Prefect's atexit hook only
            self.watchdog = subprocess.Popen(
                [sys.executable, "-S", "-c", _WATCHDOG, str(process.pid), "uvicorn"],
                stdin=subprocess.PIPE,
                start_new_session=True,  # a Ctrl-C in the terminal must not reach it before the server
                close_fds=True,
            )


_running: list[TemporaryServer] = []  # held until exit: the watchdog's pipe closes with the process


def start_temporary_server() -> None:
    """Start Prefect's temporary server now, if this process is to use one. Prefect's atexit
    hook stops it after its log and event workers have drained; the watchdog covers the exits
    that run no atexit hook."""
    if uses_temporary_server() and not _running:
        _running.append(TemporaryServer())
