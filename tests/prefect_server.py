"""A real Prefect server (and work-pool workers) in subprocesses, for tests that need more than
the in-process test harness: deployments, work pools, workers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from tests.ports import free_port


def prefect_cli() -> list[str]:
    exe = Path(sys.executable).with_name("prefect")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "prefect"]


def wait_healthy(api_url: str, proc: subprocess.Popen[bytes], timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"Prefect server at {api_url} did not become healthy")
        time.sleep(0.5)


def drain_prefect_workers() -> None:
    """Send this process's queued Prefect logs and events now, while the server they are for is
    up: queued for a server that has stopped, they would hang the next drain (the session
    harness drains at its teardown) retrying forever."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    try:
        APILogWorker.instance().drain()
    except RuntimeError:
        pass  # never started
    EventsWorker.drain_all()


@contextmanager
def prefect_server(home: Path, database_url: str | None = None) -> Iterator[tuple[str, dict[str, str]]]:
    """Start `prefect server start` on a free loopback port; yields (API URL, env for clients)."""
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_URL": api_url,
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "1",
    }
    if database_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
    home.mkdir(parents=True, exist_ok=True)
    log = open(home / "server.log", "wb")
    server_env = {k: v for k, v in env.items() if k != "PREFECT_API_URL"}
    # The UI (served by the same process) asks this for its API; unset, it would try port 4200.
    server_env["PREFECT_UI_API_URL"] = api_url
    proc = subprocess.Popen(
        [*prefect_cli(), "server", "start", "--host", "127.0.0.1", "--port", str(port)], env=server_env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait_healthy(api_url, proc)
        yield api_url, env
    finally:
        _stop(proc, log)


@contextmanager
def process_worker(pool: str, env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`prefect worker start` for a process work pool (created if missing)."""
    subprocess.run([*prefect_cli(), "work-pool", "create", pool, "--type", "process"], env=env, check=True, capture_output=True)
    log = open(log_path, "wb")
    proc = subprocess.Popen([*prefect_cli(), "worker", "start", "--pool", pool, "--limit", "2"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        _stop(proc, log)


def _stop(proc: subprocess.Popen[bytes], log: IO[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()
