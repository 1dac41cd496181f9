"""`colorize serve` as a real process on its own temporary Prefect server: stopped by a signal,
it ends with SIGTERM's exit status, 143, within seconds, also when the Prefect server is
already gone. (SIGINT takes the path every command's Ctrl-C takes: 130.)"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.serve import CANCEL_TIMEOUT_S, PAUSE_TIMEOUT_S

pytestmark = [pytest.mark.slow]

# A first start migrates the temporary server's database: minutes on a busy 2-core machine.
START_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def prefect_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # One fresh PREFECT_HOME for the module: the first start migrates its database, later ones reuse it.
    return tmp_path_factory.mktemp("serve-prefect-home")


def _servers(prefect_home: Path) -> list[int]:
    """Pids of the temporary Prefect servers started with this PREFECT_HOME."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if b"uvicorn" in (entry / "cmdline").read_bytes() and str(prefect_home).encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.fixture()
def serving(tmp_path: Path, prefect_home: Path) -> Iterator[subprocess.Popen[str]]:
    """`colorize serve` running, its deployments served, on a temporary server (no PREFECT_API_URL)."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(prefect_home), COLORIZE_HOME=str(tmp_path / "home"), PYTHONUNBUFFERED="1")
    args = ["serve", "--source", str(tmp_path / "bw"), "--dest", str(tmp_path / "out"), "--photos", str(tmp_path / "colour")]
    proc = subprocess.Popen([sys.executable, "-m", "flows.cli", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Printed once the runner has started (flows/serve.py): from then on a signal pauses the
        # schedules. Waited for in a thread, so a serve that never starts fails the test.
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: lines.put(proc.stdout.readline() if proc.stdout else ""), daemon=True).start()
        try:
            line = lines.get(timeout=START_TIMEOUT_S)
        except queue.Empty:
            pytest.fail(f"`colorize serve` did not start within {START_TIMEOUT_S} s")
        assert line.startswith("serving nightly/nightly"), line + (proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _stop(proc: subprocess.Popen[str], sig: signal.Signals) -> tuple[int, str, float]:
    started = time.monotonic()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err, time.monotonic() - started


def test_sigterm_pauses_the_schedules_and_exits_143(serving: subprocess.Popen[str], prefect_home: Path) -> None:
    code, err, seconds = _stop(serving, signal.SIGTERM)
    assert code == 143, err
    assert "All deployments have been paused" in err and err.strip().splitlines()[-1] == "colorize serve: stopped"
    assert seconds < 30, seconds  # measured: about 4 s on 2 busy cores, most of it Prefect's exit; loose for a busy CI
    deadline = time.monotonic() + 30
    while _servers(prefect_home) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _servers(prefect_home) == []


def test_sigterm_after_the_server_is_gone_exits_143_within_seconds(serving: subprocess.Popen[str], prefect_home: Path) -> None:
    servers = _servers(prefect_home)
    assert servers
    for pid in servers:
        os.kill(pid, signal.SIGKILL)
    time.sleep(1)
    code, err, seconds = _stop(serving, signal.SIGTERM)
    assert code == 143, err
    assert "could not pause the deployments' schedules" in err and err.strip().splitlines()[-1] == "colorize serve: stopped"
    # Bounded by PAUSE_TIMEOUT_S and CANCEL_TIMEOUT_S, then Prefect's exit; loose for a busy CI.
    assert seconds < PAUSE_TIMEOUT_S + CANCEL_TIMEOUT_S + 20, seconds

