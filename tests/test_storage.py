"""One set of assertions, run against a local folder and against real S3 servers over HTTP: moto
(a mock of AWS), SeaweedFS and Ceph RGW (tests/conftest.py `any_store_uri`)."""

from __future__ import annotations

import logging
from pathlib import Path

import boto3
import pytest

from colorize_core.storage.local import LocalStore
from colorize_core.storage.objects import InvalidKeyError, ObjectNotFound, StorageError
from colorize_core.storage.s3 import S3Store
from colorize_core.storage.stores import open_store, split_uri


def test_write_read_exists_delete(any_store_uri: str) -> None:
    store = open_store(any_store_uri)
    assert not store.exists("a/b.jpg")
    store.write("a/b.jpg", b"\xff\xd8data")
    assert store.exists("a/b.jpg")
    assert store.read("a/b.jpg") == b"\xff\xd8data"
    store.write("a/b.jpg", b"new")  # overwrite
    assert store.read("a/b.jpg") == b"new"
    store.delete("a/b.jpg")
    assert not store.exists("a/b.jpg")
    with pytest.raises(ObjectNotFound):
        store.read("a/b.jpg")


def test_every_store_says_where_it_lies_and_sweeps(store_uri: str) -> None:
    """What only a local folder has is asked of every store (no caller tests a store's type)."""
    store = open_store(store_uri)
    store.write("a/b.txt", b"x")
    path = store.local_path("a/b.txt")
    if store_uri.startswith("s3://"):
        assert path is None and store.local_path() is None
    else:
        assert path is not None and path.read_bytes() == b"x" and store.local_path() == Path(store_uri).resolve()
    assert store.sweep_temporaries() == 0  # a clean store: nothing a killed writer left
    if not store_uri.startswith("s3://"):
        with pytest.raises(InvalidKeyError):
            store.local_path("../outside")  # checked like every key


def test_listing_is_sorted_paginated_and_carries_size_and_etag(any_store_uri: str) -> None:
    store = open_store(any_store_uri)
    keys = ["z.jpg", "a/2.png", "a/10.png", "b c/é ü.jpg", "a/1.png"]
    for i, k in enumerate(keys):
        store.write(k, b"x" * (i + 1))
    if isinstance(store, S3Store):
        store.page_size = 2  # force several LIST pages
    listed = list(store.list())
    assert [o.key for o in listed] == sorted(keys, key=lambda k: k.encode())
    sizes = {o.key: o.size for o in listed}
    assert sizes["z.jpg"] == 1 and sizes["a/1.png"] == 5
    assert all(o.etag for o in listed)
    assert [o.key for o in store.list("a/")] == ["a/1.png", "a/10.png", "a/2.png"]
    before = {o.key: o.etag for o in listed}
    store.write("z.jpg", b"changed!")
    assert {o.key: o.etag for o in store.list()}["z.jpg"] != before["z.jpg"]


@pytest.mark.parametrize("key", ["../x", "a/../../x", "/etc/x", "a\x00b", "a\nb", "", "a//b", "./a", "C:/x", "a\\b"])
def test_hostile_keys_are_refused(any_store_uri: str, key: str) -> None:
    store = open_store(any_store_uri)
    with pytest.raises(InvalidKeyError):
        store.write(key, b"x")
    with pytest.raises(InvalidKeyError):
        store.read(key)


def test_local_store_cannot_be_escaped_through_a_symlink(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "link").symlink_to(tmp_path)
    with pytest.raises(InvalidKeyError, match="outside"):
        LocalStore(root).write("link/evil.txt", b"x")
    assert not (tmp_path / "evil.txt").exists()


def test_local_writes_are_atomic_and_hide_temporaries(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.write("k.bin", b"old")
    (tmp_path / ".k.bin.abc.tmp").write_bytes(b"half")  # what a crashed writer of an older version left
    assert [o.key for o in store.list()] == ["k.bin"]


def test_a_reader_never_sees_a_partial_object(any_store_uri: str) -> None:
    """While a writer rewrites a 4 MB object over and over, a reader sees the old or the new
    bytes whole, every time: never a prefix, never a mix."""
    import threading

    store = open_store(any_store_uri)
    versions = [bytes([v]) * (4 << 20) for v in range(4)]
    store.write("big.bin", versions[0])
    done = threading.Event()
    seen: list[int] = []
    torn: list[int] = []

    def reader() -> None:
        while not done.is_set():
            data = store.read("big.bin")
            if data in versions:
                seen.append(data[0])
            else:
                torn.append(len(data))

    thread = threading.Thread(target=reader)
    thread.start()
    for i in range(1, 13):
        store.write("big.bin", versions[i % 4])
    done.set()
    thread.join()
    assert torn == [] and len(seen) > 1


def test_uris() -> None:
    assert isinstance(open_store("file:///tmp/x%20y"), LocalStore)
    assert open_store("file:///tmp/x%20y").uri == "/tmp/x y"
    s3 = open_store("s3://bucket/pre/fix/")
    assert isinstance(s3, S3Store) and s3.bucket == "bucket" and s3.prefix == "pre/fix"
    store, key = split_uri("s3://bucket/a/manifest.parquet")
    assert store.uri == "s3://bucket/a" and key == "manifest.parquet"
    with pytest.raises(ValueError):
        open_store("ftp://host/x")


def test_s3_errors_are_storage_errors_without_secrets(s3_endpoint: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    store = open_store("s3://no-such-bucket-here/x")
    with pytest.raises(StorageError) as err:
        store.write("k", b"x")
    text = str(err.value) + caplog.text
    assert "NoSuchBucket" in str(err.value)
    assert "testing-secret-never-logged" not in text


def test_s3_honours_the_endpoint_variable(s3_bucket: str, s3_endpoint: str) -> None:
    open_store(f"s3://{s3_bucket}").write("hello.txt", b"hi")
    raw = boto3.client("s3", endpoint_url=s3_endpoint).get_object(Bucket=s3_bucket, Key="hello.txt")
    assert raw["Body"].read() == b"hi"


def test_ranged_reads(any_store_uri: str) -> None:
    store = open_store(any_store_uri)
    store.write("blob.bin", bytes(range(100)))
    assert store.read_range("blob.bin", 0, 8) == bytes(range(8))
    assert store.read_range("blob.bin", 95, 20) == bytes(range(95, 100))  # fewer at the end
    assert store.read_range("blob.bin", 100, 5) == b"" and store.read_range("blob.bin", 10, 0) == b""
    with pytest.raises(ObjectNotFound):
        store.read_range("missing.bin", 0, 8)


def test_local_listing_walks_only_the_prefix_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from colorize_core.storage import local as storage

    store = open_store(str(tmp_path / "s"))
    for key in ("photos/a.jpg", "photos/b/c.jpg", "_colorize/metadata/r-shard-00000.parquet", "_colorize/metadata/x.parquet"):
        store.write(key, b"x")
    scanned: list[str] = []
    real_scandir = storage.os.scandir

    def recording_scandir(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        scanned.append(Path(path).relative_to(tmp_path / "s").as_posix())
        return real_scandir(path, *args, **kwargs)

    monkeypatch.setattr(storage.os, "scandir", recording_scandir)
    assert [o.key for o in store.list("_colorize/metadata/r-")] == ["_colorize/metadata/r-shard-00000.parquet"]
    assert scanned == ["_colorize/metadata"]  # the photos were never visited
    assert [o.key for o in store.list("photos/")] == ["photos/a.jpg", "photos/b/c.jpg"]
    assert list(store.list("missing/")) == [] and len(list(store.list())) == 4


def test_object_size(any_store_uri: str) -> None:
    store = open_store(any_store_uri)
    store.write("sized.bin", b"x" * 1234)
    assert store.size("sized.bin") == 1234
    with pytest.raises(ObjectNotFound):
        store.size("missing.bin")


def test_conditional_create_and_replace(any_store_uri: str) -> None:
    """What the lease rests on: a create refused once the key exists, a replace refused unless
    the etag is the current one (whatever form of the ETag the store matches), never a silent
    overwrite."""
    store = open_store(any_store_uri)
    first = store.create("lease.json", b"one")
    assert first and store.etag("lease.json") == first
    assert store.create("lease.json", b"two") is None and store.read("lease.json") == b"one"
    second = store.replace("lease.json", b"two", first)
    assert second and second != first and store.read("lease.json") == b"two" and store.etag("lease.json") == second
    assert store.replace("lease.json", b"three", first) is None and store.read("lease.json") == b"two"  # a stale etag
    third = store.replace("lease.json", b"three", second)  # the form learned (or not needed) holds for the next one
    assert third and store.read("lease.json") == b"three"
    assert store.replace("missing.json", b"x", third) is None and not store.exists("missing.json")
    store.delete("lease.json")
    assert store.create("lease.json", b"again")  # free again once deleted


def test_racing_writers_have_exactly_one_winner(any_store_uri: str) -> None:
    """Eight writers create the same key at once, then eight replace it from the same etag:
    one wins each round, the others are refused, and the object is the winner's."""
    from concurrent.futures import ThreadPoolExecutor

    store = open_store(any_store_uri)
    bodies = [f"writer {i}".encode() for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        created = list(pool.map(lambda body: store.create("race.json", body), bodies))
        winners = [b for b, etag in zip(bodies, created) if etag]
        assert len(winners) == 1 and store.read("race.json") == winners[0]
        base = store.etag("race.json")
        replaced = list(pool.map(lambda body: store.replace("race.json", body + b" again", base), bodies))
    winners = [b + b" again" for b, etag in zip(bodies, replaced) if etag]
    assert len(winners) == 1 and store.read("race.json") == winners[0]


def test_a_key_the_store_refuses_is_a_key_error_with_its_reason(s3_on: tuple[str, str]) -> None:
    """A key the project accepts but the store will not hold (SeaweedFS: a file name, the last
    segment, over 255 bytes) is an InvalidKeyError carrying the store's reason (so it becomes that photo's failed
    row, write_output), not a failed shard; the stores that hold it read it back."""
    server, bucket = s3_on
    store = open_store(f"s3://{bucket}/out")
    key = "long/" + "n" * 300 + ".png"
    assert store.check_key(key) is None  # within S3's 1024 bytes: nothing the project refuses
    if server == "seaweedfs":
        with pytest.raises(InvalidKeyError, match="refuses key.*KeyTooLongError") as err:
            store.write(key, b"x")
        assert err.value.permanent
        with pytest.raises(InvalidKeyError, match="KeyTooLongError"):
            store.create(key, b"x")
    else:
        store.write(key, b"x")
        assert store.read(key) == b"x"
