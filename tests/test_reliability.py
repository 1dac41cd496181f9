"""The promises of unattended runs, in process: error classes, retries, listing's key checks,
the destination lease, temporaries and umask, checkpoint headers, pending sources in status.
(tests/test_chaos.py checks the same promises with real processes, signals and a faulty network.)"""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from colorize_core.archive.layout import LEASE_KEY, plan_key
from colorize_core.archive.lease import ConditionalWritesIgnored, DestinationBusy, Lease, read_lease
from colorize_core.archive.listing import Manifest, list_images, write_manifest, write_plan
from colorize_core.archive.summary import summarize
from colorize_core.model.checkpoint import CheckpointError, load_checkpoint, read_model_id
from colorize_core.storage import errors
from colorize_core.storage.errors import RetryPolicy, call_with_retries, is_transient
from colorize_core.storage.local import LocalStore, TMP_DIR
from colorize_core.storage.objects import InvalidKeyError, LocationNotFound, ObjectStore, StorageError
from colorize_core.storage.procs import this_host
from colorize_core.storage.stores import child_uri, open_store
from tests.conftest import gray_archive


class _Response(Exception):
    def __init__(self, code: str, status: int) -> None:
        super().__init__(code)
        self.response = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}


@pytest.mark.parametrize(
    "exc, transient",
    [
        (_Response("SlowDown", 503), True),
        (_Response("InternalError", 500), True),
        (_Response("502", 502), True),
        (_Response("NoSuchBucket", 404), False),
        (_Response("AccessDenied", 403), False),
        (_Response("InvalidAccessKeyId", 403), False),
        (ConnectionResetError(), True),
        (TimeoutError(), True),
        (OSError(errno.ENOSPC, "No space left on device"), False),
        (OSError(errno.ESTALE, "Stale file handle"), True),
        (ValueError("corrupt"), False),
        (StorageError("x", transient=True), True),
        (StorageError("x"), False),
    ],
)
def test_errors_are_classified_in_one_place(exc: BaseException, transient: bool) -> None:
    assert is_transient(exc) is transient


def test_botocore_connection_errors_are_transient_and_credentials_are_not() -> None:
    from botocore.exceptions import (
        ConnectionClosedError,
        CredentialRetrievalError,
        EndpointConnectionError,
        NoCredentialsError,
        ReadTimeoutError,
        SSLError,
    )

    assert is_transient(EndpointConnectionError(endpoint_url="http://x"))
    assert is_transient(ConnectionClosedError(endpoint_url="http://x"))
    assert is_transient(ReadTimeoutError(endpoint_url="http://x"))
    assert is_transient(CredentialRetrievalError(provider="imds", error_msg="timed out"))
    assert not is_transient(NoCredentialsError())
    assert not is_transient(SSLError(endpoint_url="https://x", error="certificate verify failed"))


def test_retries_back_off_until_the_total_then_mark_the_error() -> None:
    calls: list[float] = []

    def flaky() -> str:
        calls.append(time.monotonic())
        if len(calls) < 4:
            raise ConnectionResetError("reset")
        return "ok"

    assert call_with_retries(flaky, "test", RetryPolicy(total_s=10, first_s=0.01, max_wait_s=0.05)) == "ok" and len(calls) == 4

    def down() -> None:
        calls.append(time.monotonic())
        raise ConnectionResetError("still down")

    calls.clear()
    with pytest.raises(ConnectionResetError) as err:
        call_with_retries(down, "test", RetryPolicy(total_s=0.5, first_s=0.02, max_wait_s=0.1))
    assert err.value.retried and len(calls) > 3 and calls[-1] - calls[0] <= 0.5  # type: ignore[attr-defined]

    calls.clear()
    with pytest.raises(InvalidKeyError):  # permanent: once, at once
        call_with_retries(lambda: (calls.append(0.0), (_ for _ in ()).throw(InvalidKeyError("bad")))[1], "test")
    assert len(calls) == 1


def test_a_stop_request_ends_a_retry_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(errors, "STOP", errors.threading.Event())
    errors.STOP.set()
    started = time.monotonic()
    with pytest.raises(ConnectionResetError):
        call_with_retries(lambda: (_ for _ in ()).throw(ConnectionResetError()), "test", RetryPolicy(total_s=60, first_s=30))
    assert time.monotonic() - started < 1


def test_s3_outage_is_retried_and_missing_bucket_fails_at_once(s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_store(f"s3://{s3_bucket}")
    store.write("a.txt", b"a")
    client = store.client
    real_get = client.get_object
    failures = {"left": 3}

    def flaky_get(**kwargs: object) -> object:
        if failures["left"]:
            failures["left"] -= 1
            from botocore.exceptions import EndpointConnectionError

            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:9")
        return real_get(**kwargs)

    monkeypatch.setattr(client, "get_object", flaky_get)
    monkeypatch.setenv("COLORIZE_RETRY_SECONDS", "30")
    assert store.read("a.txt") == b"a" and failures["left"] == 0
    started = time.monotonic()
    with pytest.raises(LocationNotFound, match="does not exist"):
        open_store("s3://no-such-bucket-anywhere/x").read("k")
    assert time.monotonic() - started < 2  # no retries for a permanent error


def test_a_store_with_its_own_retry_policy_gives_up_sooner(s3_bucket: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`with_retries`: a copy of the store whose calls retry under another policy (a lease's
    renewal must give up within a quarter of its life), the store itself unchanged."""
    from botocore.exceptions import EndpointConnectionError

    store = open_store(f"s3://{s3_bucket}")
    calls: list[float] = []

    def down(**kwargs: object) -> object:
        calls.append(time.monotonic())
        raise EndpointConnectionError(endpoint_url="http://127.0.0.1:9")

    monkeypatch.setattr(store.client, "get_object", down)
    monkeypatch.setenv("COLORIZE_RETRY_SECONDS", "600")
    quick = store.with_retries(RetryPolicy(total_s=0.4, first_s=0.02, max_wait_s=0.1))
    started = time.monotonic()
    with pytest.raises(StorageError):
        quick.read("a.txt")
    assert time.monotonic() - started < 2 and len(calls) > 1  # retried, then gave up at its own budget
    assert store.retries is None and quick.retries is not None and quick.uri == store.uri
    local = open_store(str(tmp_path))  # a folder: the same for the local store
    assert local.with_retries(RetryPolicy(total_s=1)).retries == RetryPolicy(total_s=1) and local.retries is None


def test_credential_errors_name_the_variables(s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from colorize_core.storage import s3

    # No credentials anywhere in the chain: no variables, no files, no instance metadata.
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setattr(s3, "_clients", {})
    started = time.monotonic()
    with pytest.raises(StorageError) as err:
        open_store(f"s3://{s3_bucket}").read("k")
    assert not err.value.transient and "AWS_ACCESS_KEY_ID" in str(err.value) and "AWS_ENDPOINT_URL" in str(err.value)
    assert time.monotonic() - started < 5  # permanent: no retries


def test_missing_source_is_an_error_and_an_empty_one_is_not(tmp_path: Path, s3_bucket: str) -> None:
    with pytest.raises(LocationNotFound):
        list_images(open_store(str(tmp_path / "typo")))
    (tmp_path / "empty").mkdir()
    assert list_images(open_store(str(tmp_path / "empty"))) == []
    with pytest.raises(LocationNotFound):
        list_images(open_store(f"s3://{s3_bucket}/typo"))
    with pytest.raises(LocationNotFound, match="does not exist"):
        list_images(open_store("s3://no-such-bucket-at-all/photos"))
    open_store(f"s3://{s3_bucket}").write("folder/readme.txt", b"not an image")
    assert list_images(open_store(f"s3://{s3_bucket}/folder")) == []


def test_listing_checks_each_key_once_for_source_and_destination(tmp_path: Path, s3_bucket: str) -> None:
    client = boto3.client("s3")
    good = ["a.png", "sub/b.png"]
    hostile = ["x/../escape.png", "./dot.png", "tab\there.png", "y//double.png", ("n" * 300) + ".png"]
    for key in good + hostile:
        client.put_object(Bucket=s3_bucket, Key=f"src/{key}", Body=b"\x89PNG")
    listed = {o.key: o.problem for o in list_images(open_store(f"s3://{s3_bucket}/src"), open_store(str(tmp_path / "out")))}
    assert set(listed) == set(good) | set(hostile)
    assert [k for k, problem in listed.items() if problem is None] == good
    assert "longer" in (listed[hostile[-1]] or "") or "bytes" in (listed[hostile[-1]] or "")
    # The manifest carries each problem to the shard that turns it into a failed row.
    uri = str(tmp_path / "plan.parquet")
    objects = list_images(open_store(f"s3://{s3_bucket}/src"), open_store(str(tmp_path / "out")))
    write_manifest(Manifest("s3://x", 3, objects), uri)
    from colorize_core.archive.listing import read_manifest

    assert {o.key: o.problem for o in read_manifest(uri).objects} == listed


def _latin1_photo(folder: Path, name: bytes) -> None:
    """A photo whose file name is Latin-1, not UTF-8 (a folder from an old Windows disk)."""
    from PIL import Image

    with open(os.path.join(os.fsencode(folder), name), "wb") as f:
        Image.new("L", (40, 30), 90).save(f, "PNG")


def test_a_file_name_that_is_not_utf8_is_a_failed_row_not_a_failed_listing(tmp_path: Path) -> None:
    from colorize_core.storage.columns import NOT_UTF8

    src = tmp_path / "bw"
    (src / "box").mkdir(parents=True)
    _latin1_photo(src / "box", b"caf\xe9 1920.png")
    _latin1_photo(src, b"ok.png")
    listed = {o.key: o.problem for o in list_images(LocalStore(src), LocalStore(tmp_path / "out"))}
    assert listed == {"box/caf\\xe9 1920.png": NOT_UTF8, "ok.png": None}


@pytest.mark.usefixtures("prefect_harness")
def test_an_archive_with_a_latin1_file_name_colorizes_the_rest(tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from colorize_core.archive.history import read_output_rows
    from flows.cli import main

    src = tmp_path / "bw"
    src.mkdir()
    _latin1_photo(src, b"caf\xe9.png")
    _latin1_photo(src, b"ok.png")
    args = ["archive", str(src), "--dest", str(tmp_path / "out"), "--checkpoint", str(tiny_checkpoint), "--allow-untrained", "--device", "cpu", "--workers", "1"]
    assert main(args) == 2  # some photos failed: said, not a crash
    rows = {r["key"]: (r["status"], r["error"]) for r in read_output_rows(str(tmp_path / "out"))}
    assert rows["ok.png"][0] == "ok"
    assert rows["caf\\xe9.png"][0] == "failed" and "not UTF-8" in rows["caf\\xe9.png"][1]
    assert (tmp_path / "out" / "ok.png").is_file()
    capsys.readouterr()
    # A re-run redoes neither: the failure is known (permanent until the file changes), and said.
    assert main(args) == 0
    assert "0 ok, 0 failed, 1 known failure, 0 skipped as colour, 1 already done" in capsys.readouterr().out
    assert len(read_output_rows(str(tmp_path / "out"))) == len(rows)


def test_local_writes_follow_the_umask_and_leave_no_temporaries(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        store = LocalStore(tmp_path / "dest")
        store.write("a/b.jpg", b"data")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "dest" / "a" / "b.jpg").stat().st_mode)
    assert mode == 0o644
    assert not (tmp_path / "dest" / TMP_DIR).exists()  # emptied and removed


def test_a_name_the_file_system_cannot_hold_is_a_key_error_and_a_full_disk_is_permanent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalStore(tmp_path)
    with pytest.raises(InvalidKeyError):
        store.write(("n" * 300) + "/x.jpg", b"x")
    assert store.check_key(("n" * 300) + "/x.jpg") is not None

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("colorize_core.storage.stores.os.replace", full)
    started = time.monotonic()
    with pytest.raises(StorageError, match="No space left on device; free space") as err:
        store.write("y.jpg", b"x")
    assert not err.value.transient and time.monotonic() - started < 1


def test_a_file_where_a_folder_should_be_fails_that_key_only(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.write("a.jpg", b"x")
    with pytest.raises(InvalidKeyError, match="a file stands where a folder"):
        store.write("a.jpg/b.jpg", b"y")  # S3 holds both keys; a file system cannot


def test_concurrent_writers_share_the_temporary_folder(tmp_path: Path) -> None:
    """Each writer removes the temporary folder it leaves empty; the others make it again."""
    from concurrent.futures import ThreadPoolExecutor

    store = LocalStore(tmp_path)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: store.write(f"d{i % 5}/k{i}.bin", b"x" * (i % 7)), range(400)))
    assert len(list(store.list())) == 400 and not store.tmp_dir.exists()


def test_temporaries_of_a_dead_writer_are_swept(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    # A writer killed mid-write leaves its temporary: a process that has exited by now.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    store.tmp_dir.mkdir()
    left = store.tmp_dir / f"{this_host()}-{dead.stdout.strip()}-abcdef.tmp"
    left.write_bytes(b"half")
    mine = store.tmp_dir / f"{this_host()}-{os.getpid()}-123456.tmp"
    mine.write_bytes(b"in progress")
    assert store.sweep_temporaries() == 1
    assert not left.exists() and mine.exists()
    mine.unlink()
    assert store.sweep_temporaries() == 0 and not store.tmp_dir.exists()  # the emptied folder goes too
    assert [o.key for o in store.list()] == []  # temporaries are never listed


def test_lease_is_exclusive_renewed_released_and_taken_over_when_abandoned(any_store_uri: str) -> None:
    """On a folder and on each real S3 server (moto, SeaweedFS, Ceph RGW: Ceph matches If-Match
    only with an unquoted ETag, and before the fix no renewal landed and no expired lease could
    be taken over there)."""
    store_uri = any_store_uri
    with Lease(store_uri, "run-a", ttl_s=2.0) as first:
        with pytest.raises(DestinationBusy, match="run-a"):
            Lease(store_uri, "run-b").acquire()
        held = read_lease(store_uri)
        assert held is not None and held[0].run_id == "run-a"
        time.sleep(1.2)  # a heartbeat every ttl/4 keeps it alive past its first expiry
        renewed = read_lease(store_uri)
        assert renewed is not None and renewed[0].heartbeat_at > held[0].heartbeat_at
        assert not first.lost
    assert read_lease(store_uri) is None
    # A holder that stopped renewing (crashed on another host) expires after its ttl.
    store = open_store(store_uri)
    stale = {"host": "elsewhere", "pid": 1, "run_id": "run-dead", "acquired_at": "2026-01-01T00:00:00+00:00",
             "heartbeat_at": "2026-01-01T00:00:00+00:00", "expires_at": "2026-01-01T00:10:00+00:00"}  # fmt: skip
    store.write(LEASE_KEY, json.dumps(stale).encode())
    with Lease(store_uri, "run-c") as taker:
        assert read_lease(store_uri)[0].run_id == "run-c"  # type: ignore[index]
    assert not taker.lost


def test_a_lease_write_refused_after_its_lost_reply_is_still_ours(any_store_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A conditional write succeeds, its reply is lost, the retry is refused (412): the lease
    names this run, so it is ours, not taken by another."""
    store_uri = any_store_uri
    lease = Lease(store_uri, "run-a", ttl_s=0.4)
    store = lease.store
    real_create, real_replace = store.create, store.replace
    monkeypatch.setattr(store, "create", lambda key, data: (real_create(key, data), None)[1])
    monkeypatch.setattr(store, "replace", lambda key, data, etag: (real_replace(key, data, etag), None)[1])
    with lease:
        time.sleep(0.5)  # several heartbeats, each "refused"
        assert not lease.lost
    assert read_lease(store_uri) is None


def test_a_lost_lease_stops_the_runs_shards(any_store_uri: str) -> None:
    """Also on the real S3 servers: a renewal from an etag that is no longer the lease's is
    refused (on Ceph, the retry in the other ETag form must not make it land)."""
    from colorize_core.storage.errors import Interrupted, run_stop

    dest = any_store_uri
    with Lease(dest, "run-a", ttl_s=0.4) as lease:
        other = {"host": "elsewhere", "pid": 1, "run_id": "run-b", "acquired_at": "x", "heartbeat_at": "x", "expires_at": "2999-01-01T00:00:00+00:00"}
        open_store(dest).write(LEASE_KEY, json.dumps(other).encode())  # taken over while we stalled
        deadline = time.monotonic() + 5  # the next heartbeat (every 0.1 s) finds out; over HTTP it takes a little longer
        while not lease.lost and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lease.lost and run_stop("run-a").is_set()
        with pytest.raises(Interrupted):
            errors.check_stop("run-a")
    assert read_lease(dest)[0].run_id == "run-b"  # type: ignore[index]  # not deleted by the loser


class IgnoresConditions:
    """A store that takes If-None-Match and If-Match and ignores them, as some S3-compatible
    stores do: every create and replace overwrites."""

    def __init__(self, store: ObjectStore) -> None:
        self.inner, self.uri = store, store.uri

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def create(self, key: str, data: bytes) -> str | None:
        self.inner.write(key, data)
        return self.inner.etag(key)

    def replace(self, key: str, data: bytes, etag: str) -> str | None:
        self.inner.write(key, data)
        return self.inner.etag(key)


def test_a_store_that_ignores_conditional_writes_stops_the_lease_in_one_line(any_store_uri: str) -> None:
    """Taking a lease first checks that the store refuses a second create of a probe object: on
    one that does not, the run stops, naming the store and --no-lease, before it overwrites the
    holder's lease; the probe is not left behind. The real stores pass the check."""
    from flows import exits

    store = open_store(any_store_uri)
    holder = {"host": "elsewhere", "pid": 1, "run_id": "run-live", "acquired_at": "x", "heartbeat_at": "x", "expires_at": "2999-01-01T00:00:00+00:00"}
    store.write(LEASE_KEY, json.dumps(holder).encode())
    lease = Lease(any_store_uri, "run-a")
    lease.store = IgnoresConditions(lease.store)  # type: ignore[assignment]
    with pytest.raises(ConditionalWritesIgnored) as err:
        lease.acquire()
    message = exits.one_line(err.value)
    assert message == str(err.value) and store.uri in message and "--no-lease" in message and "unsafe" in message
    assert read_lease(any_store_uri)[0].run_id == "run-live"  # type: ignore[index]  # the holder's lease stands
    assert [o.key for o in store.list("_colorize/")] == [LEASE_KEY]  # no probe left
    # The same store, honest: the check passes and the usual refusal names the holder.
    with pytest.raises(DestinationBusy, match="run-live"):
        Lease(any_store_uri, "run-a").acquire()
    assert [o.key for o in store.list("_colorize/")] == [LEASE_KEY]


def test_no_lease_is_an_archive_option() -> None:
    from flows.cli import build_parser

    assert build_parser().parse_args(["archive", "src", "--dest", "out", "--no-lease"]).no_lease is True
    assert build_parser().parse_args(["archive", "src", "--dest", "out"]).no_lease is False


def test_a_lease_waits_for_its_holder_when_asked(tmp_path: Path) -> None:
    dest = str(tmp_path / "dest")
    holder = Lease(dest, "run-a", ttl_s=60)
    holder.acquire()
    import threading

    threading.Timer(1.0, holder.release).start()
    started = time.monotonic()
    with Lease(dest, "run-b", wait_s=30, poll_s=0.2):
        assert time.monotonic() - started >= 0.9


def test_random_bytes_are_a_checkpoint_error_not_an_allocation(tmp_path: Path) -> None:
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError, match="not a safetensors checkpoint"):
        read_model_id(junk)
    with pytest.raises(CheckpointError):
        load_checkpoint(junk)
    (tmp_path / "short.safetensors").write_bytes(b"\x01\x02")
    with pytest.raises(CheckpointError, match="truncated"):
        read_model_id(tmp_path / "short.safetensors")


def test_status_shows_what_a_killed_run_planned_and_did_not_do(tmp_path: Path, tiny_checkpoint: Path) -> None:
    from colorize_core.archive.shards import colorize_shard, plan_archive, shared_colorizer

    src, dest = str(tmp_path / "gray"), str(tmp_path / "out")
    gray_archive(src, 6)
    plan = plan_archive(src, dest, read_model_id(tiny_checkpoint), shard_size=2)
    run_id = "20261127T010000-deadbeef"
    write_plan(plan.manifest(), plan.source, 2, child_uri(dest, plan_key(run_id)))
    colorize_shard(src, dest, plan.shard(0), shared_colorizer(str(tiny_checkpoint), "cpu"), run_id=run_id, shard=0)
    # ... and the run was killed here: shards 1 and 2 never ran.
    summary = summarize(dest)
    assert summary.sources == 6 and summary.latest == {"ok": 2, "pending": 4}
    assert {run for _, run in summary.pending} == {run_id}


def test_a_stopping_run_leaves_its_shard_uncommitted(tmp_path: Path, tiny_checkpoint: Path) -> None:
    from colorize_core.archive.shards import colorize_shard, plan_archive, shared_colorizer
    from colorize_core.storage.errors import Interrupted, forget_run, run_stop

    src, dest = str(tmp_path / "gray"), str(tmp_path / "out")
    gray_archive(src, 4)
    plan = plan_archive(src, dest, read_model_id(tiny_checkpoint), shard_size=4)
    run_stop("run-x").set()
    try:
        with pytest.raises(Interrupted):
            colorize_shard(src, dest, plan.shard(0), shared_colorizer(str(tiny_checkpoint), "cpu"), run_id="run-x", shard=0)
    finally:
        forget_run("run-x")
    assert not (tmp_path / "out" / "_colorize" / "metadata").exists()  # nothing committed
