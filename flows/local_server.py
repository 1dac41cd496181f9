"""The temporary Prefect server a flow command uses when no `PREFECT_API_URL` is set.

Prefect starts one itself on first use, but gives it 20 s (a first start migrates a fresh
database, which takes longer on a 2-core machine) and leaves it running if this process is
killed (SIGKILL: no atexit). Here it is started up front, through Prefect's own
`SubprocessASGIServer` (the instance Prefect's clients then reuse), with a startup timeout long
enough for a first start (`PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS` wins when the user
set it), and a watchdog process that stops the server when this process dies, however it dies.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

STARTUP_TIMEOUT_S = 180
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


def uses_temporary_server() -> bool:
    """True when Prefect would run a temporary server for this process (no API URL set)."""
    from prefect.settings import get_current_settings

    return not get_current_settings().api.url


def start_temporary_server() -> subprocess.Popen[bytes] | None:
    """Start Prefect's temporary server now (if one is to be used) and its watchdog; returns
    the watchdog (keep a reference: its stdin pipe is what keeps it waiting)."""
    if not uses_temporary_server():
        return None
    from prefect.server.api.server import SubprocessASGIServer

    timeout = int(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS") or STARTUP_TIMEOUT_S)
    server = SubprocessASGIServer()
    server.start(timeout=timeout)
    process = server.server_process
    if process is None or not sys.platform.startswith("linux"):
        return None  # elsewhere: stopped at exit by Prefect's atexit hook only
    return subprocess.Popen(
        [sys.executable, "-S", "-c", _WATCHDOG, str(process.pid), "uvicorn"],
        stdin=subprocess.PIPE,
        start_new_session=True,  # a Ctrl-C in the terminal must not kill it before the server
        close_fds=True,
    )
