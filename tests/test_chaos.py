"""Chaos: `colorize archive` as real processes, killed, stopped, overlapped, on a full disk, and
against the test S3 server through a fault-injecting proxy (resets, delays, an outage).

Each promise is checked the way an operator would: exit status, the last line on stderr, the
metadata (`colorize status`), what lies in the destination, what processes are left."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from PIL import Image

from colorize_core.archive.history import read_output_rows
from colorize_core.archive.lease import read_lease
from colorize_core.storage.local import TMP_DIR
from tests.conftest import bucket_on, gray_archive
from tests.faultproxy import FaultProxy

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


def _api_url() -> str:
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    assert url, "the test session's Prefect server"
    return str(url)


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A subprocess environment: the session's Prefect server (no temporary server per run),
    its own COLORIZE_HOME, and whatever the test adds."""
    env = {**os.environ, "PREFECT_API_URL": _api_url(), "COLORIZE_HOME": str(tmp_path / "home"), "PYTHONUNBUFFERED": "1"}
    env.update(extra)
    return env


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "flows.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: os.umask(0o022),  # what a login shell has: outputs must come out 0644
    )


def _finish(proc: subprocess.Popen[str], timeout: float = 300) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def _archive_args(source: str, dest: str, checkpoint: Path, *more: str) -> list[str]:
    return ["archive", source, "--dest", dest, "--checkpoint", str(checkpoint), "--device", "cpu", "--shard-size", "4", *more]


def _has_output(dest: Path) -> bool:
    """Whether a PNG output exists yet; the run creates and removes its temporary folder while we
    walk the tree, so a folder vanishing mid-walk means "look again", not a failure."""
    try:
        return any(dest.rglob("*.png"))
    except FileNotFoundError:
        return False


def _wait_for(condition, timeout: float, what: str, proc: subprocess.Popen[str] | None = None) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the run ended (exit {proc.returncode}) before {what}: {proc.stderr.read() if proc.stderr else ''}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _ok_once_each(dest: str, keys: list[str]) -> None:
    """Every source has exactly one ok row across all runs, and its output decodes whole."""
    rows = read_output_rows(dest)
    ok = Counter(r["key"] for r in rows if r["status"] == "ok")
    assert sorted(ok) == sorted(keys) and set(ok.values()) == {1}, ok


def _no_temporaries(root: Path) -> None:
    left = [p for p in root.rglob("*") if p.name.endswith(".tmp") or (p.is_dir() and p.name == TMP_DIR and any(p.iterdir()))]
    assert left == []


def _local_outputs_whole(dest: Path, keys: list[str]) -> None:
    for key in keys:
        path = dest / key
        with Image.open(path) as img:
            img.load()  # a truncated file raises here
            assert img.mode == "RGB"
        assert (path.stat().st_mode & 0o777) == 0o644


def _processes_with(marker: str) -> list[int]:
    """Pids of live processes whose environment holds `marker` (this test's own folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                status = (entry / "status").read_text()
                if "\nState:\tZ" not in status:
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_kill_9_at_random_points_then_rerun(tmp_path: Path, tiny_checkpoint: Path) -> None:
    src, dest = tmp_path / "gray", tmp_path / "out"
    keys = gray_archive(str(src), 48, size=(240, 320))
    env = _env(tmp_path)
    rng = random.Random(10)
    for attempt in range(3):
        proc = _start(_archive_args(str(src), str(dest), tiny_checkpoint, "--batch-size", "2"), env)
        # Kill somewhere in the middle of the work: after its first output, at a random moment.
        _wait_for(lambda: _has_output(dest), 120, "the first output", proc)
        time.sleep(rng.uniform(0.0, 2.0))
        proc.kill()
        proc.wait()
    code, err = _finish(_start(_archive_args(str(src), str(dest), tiny_checkpoint), env))
    assert code == 0, err
    _ok_once_each(str(dest), keys)
    _local_outputs_whole(dest, keys)
    _no_temporaries(dest)
    assert read_lease(str(dest)) is None


def test_two_overlapping_runs_never_write_an_output_twice(tmp_path: Path, tiny_checkpoint: Path) -> None:
    src, dest = tmp_path / "gray", tmp_path / "out"
    keys = gray_archive(str(src), 24, size=(240, 320))
    env = _env(tmp_path)
    first = _start(_archive_args(str(src), str(dest), tiny_checkpoint, "--batch-size", "1"), env)
    _wait_for(lambda: _has_output(dest), 120, "the first run's first output", first)
    first.send_signal(signal.SIGSTOP)  # a run that overruns: still alive, still holding the lease
    try:
        holder = read_lease(str(dest))
        assert holder is not None
        code, err = _finish(_start(_archive_args(str(src), str(dest), tiny_checkpoint), env))
        assert code == 75, err
        last = err.strip().splitlines()[-1]
        assert holder[0].run_id in last and "--wait" in last and "Traceback" not in err
        waiting = _start(_archive_args(str(src), str(dest), tiny_checkpoint, "--wait", "300"), env)
        time.sleep(8)  # it starts and waits for the lease
    finally:
        first.send_signal(signal.SIGCONT)
    code, err = _finish(first)
    assert code == 0, err
    # The one that waited ran after the first: everything was done, so it colorized nothing.
    out, err = waiting.communicate(timeout=300)
    assert waiting.returncode == 0 and f"0 ok, 0 failed, 0 skipped as colour, {len(keys):,} already done" in out, err
    _ok_once_each(str(dest), keys)


def test_no_lease_runs_beside_a_held_lease_and_leaves_it_alone(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """`--no-lease` (for a store that ignores conditional writes; unsafe) takes no lease: it runs
    while another run holds DEST, says so, and neither touches nor deletes the holder's lease."""
    import json

    from colorize_core.archive.layout import LEASE_KEY
    from colorize_core.storage.stores import open_store

    src, dest = tmp_path / "gray", tmp_path / "out"
    keys = gray_archive(str(src), 4)
    holder = {"host": "elsewhere", "pid": 1, "run_id": "run-live", "acquired_at": "x", "heartbeat_at": "x", "expires_at": "2999-01-01T00:00:00+00:00"}
    open_store(str(dest)).write(LEASE_KEY, json.dumps(holder).encode())
    # Without --no-lease this run would exit 75 naming run-live (test_two_overlapping_runs_...).
    code, err = _finish(_start(_archive_args(str(src), str(dest), tiny_checkpoint, "--no-lease"), _env(tmp_path)))
    assert code == 0 and "--no-lease" in err and "not leased" in err, err
    _ok_once_each(str(dest), keys)
    assert json.loads(open_store(str(dest)).read(LEASE_KEY)) == holder


@pytest.fixture(params=[pytest.param("moto", marks=pytest.mark.s3), pytest.param("seaweedfs", marks=pytest.mark.s3)])
def chaos_bucket(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket on moto, then on SeaweedFS (a real store), AWS_ENDPOINT_URL pointing at it."""
    return bucket_on(request.param, request, monkeypatch)


@pytest.fixture()
def proxy(chaos_bucket: str) -> Iterator[FaultProxy]:
    with FaultProxy(os.environ["AWS_ENDPOINT_URL"], seed=15) as p:
        yield p


def _s3_env(tmp_path: Path, endpoint: str) -> dict[str, str]:
    return _env(tmp_path, AWS_ENDPOINT_URL=endpoint)


def test_resets_and_delays_on_15_percent_of_connections(tmp_path: Path, tiny_checkpoint: Path, chaos_bucket: str, proxy: FaultProxy) -> None:
    s3_bucket = chaos_bucket
    keys = gray_archive(f"s3://{s3_bucket}/gray", 24)
    proxy.reset_fraction, proxy.delay_fraction, proxy.delay_s = 0.15, 0.15, 1.0
    code, err = _finish(_start(_archive_args(f"s3://{s3_bucket}/gray", f"s3://{s3_bucket}/out", tiny_checkpoint), _s3_env(tmp_path, proxy.endpoint)))
    assert code == 0, err
    assert proxy.counts["resets"] > 0 and proxy.counts["delays"] > 0, proxy.counts
    print(f"faults injected: {proxy.counts}")  # for RELIABILITY.md (pytest -s)
    _ok_once_each(f"s3://{s3_bucket}/out", keys)


def test_a_30_second_s3_outage_is_survived(tmp_path: Path, tiny_checkpoint: Path, chaos_bucket: str, proxy: FaultProxy) -> None:
    s3_bucket = chaos_bucket
    keys = gray_archive(f"s3://{s3_bucket}/gray", 32, size=(240, 320))
    client = boto3.client("s3")  # straight to the server, not through the proxy

    def outputs() -> int:
        return int(client.list_objects_v2(Bucket=s3_bucket, Prefix="out/box").get("KeyCount", 0))

    proc = _start(_archive_args(f"s3://{s3_bucket}/gray", f"s3://{s3_bucket}/out", tiny_checkpoint, "--batch-size", "1"), _s3_env(tmp_path, proxy.endpoint))
    _wait_for(lambda: outputs() > 0, 120, "the first output", proc)
    before = outputs()
    started = time.monotonic()
    proxy.outage(30.0)
    code, err = _finish(proc)
    assert code == 0, err
    assert before < len(keys) and time.monotonic() - started >= 30 and proxy.counts["refused"] > 0, (before, proxy.counts)
    print(f"outage began after {before} of {len(keys)} outputs; run ended {time.monotonic() - started:.1f}s after it began; {proxy.counts}")
    _ok_once_each(f"s3://{s3_bucket}/out", keys)


def test_hostile_keys_are_failed_rows_and_the_rest_is_done(tmp_path: Path, tiny_checkpoint: Path, s3_bucket: str) -> None:
    keys = gray_archive(f"s3://{s3_bucket}/gray", 6)
    good_png = boto3.client("s3").get_object(Bucket=s3_bucket, Key=f"gray/{keys[0]}")["Body"].read()
    hostile = ["../../escape.png", "a/./dot.png", "a/../up.png", "tab\tname.png", ("n" * 300) + "/long.png"]
    for key in hostile:
        boto3.client("s3").put_object(Bucket=s3_bucket, Key=f"gray/{key}", Body=good_png)
    dest = tmp_path / "jail" / "out"
    code, err = _finish(_start(_archive_args(f"s3://{s3_bucket}/gray", str(dest), tiny_checkpoint), _env(tmp_path)))
    assert code == 2, err
    rows = {r["key"]: r for r in read_output_rows(str(dest))}
    assert {k for k, r in rows.items() if r["status"] == "ok"} == set(keys)
    assert {k for k, r in rows.items() if r["status"] == "failed"} == set(hostile)
    assert all("safely" in rows[k]["error"] for k in hostile)
    assert sorted(p.name for p in (tmp_path / "jail").iterdir()) == ["out"]  # nothing outside the destination
    _local_outputs_whole(dest, keys)
    status = subprocess.run([sys.executable, "-m", "flows.cli", "status", str(dest)], env=_env(tmp_path), capture_output=True, text=True)
    assert status.returncode == 2 and "known failures (5)" in status.stdout  # unsafe names stay unsafe: not retried


@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MB tmpfs: a disk that really fills (needs root, as CI and the dev machines run)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {made.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_is_one_line_and_a_rerun_finishes(tmp_path: Path, tiny_checkpoint: Path, small_disk: Path) -> None:
    src, dest = tmp_path / "gray", small_disk / "out"
    keys = gray_archive(str(src), 24, size=(240, 320))  # ~2.5 MB of outputs: more than the disk holds
    env = _env(tmp_path)
    started = time.monotonic()
    code, err = _finish(_start(_archive_args(str(src), str(dest), tiny_checkpoint), env))
    assert code == 1, err
    last = err.strip().splitlines()[-1]
    assert "No space left on device" in last and "free space" in last and "Traceback" not in err
    assert time.monotonic() - started < 90  # permanent: no minutes of retries
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    code, err = _finish(_start(_archive_args(str(src), str(dest), tiny_checkpoint), env))
    assert code == 0, err
    _ok_once_each(str(dest), keys)
    _local_outputs_whole(dest, keys)
    _no_temporaries(dest)


@pytest.mark.parametrize("sig, expected", [(signal.SIGTERM, 143), (signal.SIGKILL, -9)])
def test_a_stopped_run_leaves_no_process_behind(tmp_path: Path, tiny_checkpoint: Path, sig: signal.Signals, expected: int) -> None:
    """With no PREFECT_API_URL the command runs its own temporary server (on a fresh
    PREFECT_HOME: a first start, migrations and all); stopped, it leaves nothing running."""
    src, dest = tmp_path / "gray", tmp_path / "out"
    keys = gray_archive(str(src), 48, size=(240, 320))
    env = {k: v for k, v in _env(tmp_path).items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    proc = _start(_archive_args(str(src), str(dest), tiny_checkpoint, "--batch-size", "1"), env)
    _wait_for(lambda: _has_output(dest), 240, "the first output", proc)
    assert len(_processes_with(str(tmp_path / "prefect-home"))) >= 2  # the command and its server
    stopped = time.monotonic()
    proc.send_signal(sig)
    code, err = _finish(proc, timeout=60)
    assert code == expected, err
    if sig == signal.SIGTERM:
        assert time.monotonic() - stopped < 30
        assert err.strip().splitlines()[-1].startswith("colorize archive: stopped") and "Traceback" not in err
    _wait_for(lambda: _processes_with(str(tmp_path / "prefect-home")) == [], 30, "the temporary server to stop")
    if sig == signal.SIGTERM:
        _no_temporaries(dest)
    code, err = _finish(_start(_archive_args(str(src), str(dest), tiny_checkpoint), _env(tmp_path)))
    assert code == 0, err
    _ok_once_each(str(dest), keys)
    _no_temporaries(dest)
