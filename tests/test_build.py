"""Sharding and dataset building, against a local folder and a real S3 server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from colorize_core.archive.listing import plan_manifest, read_manifest, write_manifest
from colorize_core.data.build import build_dataset, build_shard
from colorize_core.data.dataset import ShardImages, StepBatchSampler, open_training_data
from colorize_core.data.layout import shard_key, status_key
from colorize_core.storage.objects import StorageError
from colorize_core.storage.records import table_from_bytes
from colorize_core.storage.stores import open_store
from tests.badfiles import bad_corpus


def _fill(uri: str, files: dict[str, tuple[bytes, str]]) -> None:
    store = open_store(uri)
    for key, (data, _) in files.items():
        store.write(key, data)


@pytest.fixture()
def archive(store_uri: str) -> str:
    src = store_uri.rstrip("/") + "/archive"
    _fill(src, bad_corpus())
    open_store(src).write("notes.txt", b"not an image suffix: not listed")
    return src


def test_manifest_is_deterministic_and_round_trips(archive: str, store_uri: str) -> None:
    a, b = plan_manifest(archive, 4), plan_manifest(archive, 4)
    assert a == b and len(a.objects) == len(bad_corpus()) and a.num_shards == 4
    dest = store_uri.rstrip("/") + "/manifests/m.parquet"
    write_manifest(a, dest)
    back = read_manifest(dest)
    assert back.objects == a.objects and back.source == a.source
    table = a.to_table().to_pydict()
    assert table["shard"] == [i // 4 for i in range(len(a.objects))]


def test_bad_corpus_is_fully_accounted_for(archive: str, store_uri: str) -> None:
    corpus = bad_corpus()
    dest = store_uri.rstrip("/") + "/dataset"
    summary = build_dataset(archive, dest, size=32, shard_size=4)
    expected = {k: outcome for k, (_, outcome) in corpus.items()}
    store = open_store(dest)
    status = {}
    for i in range(4):
        for row in table_from_bytes(store.read(status_key(i))).to_pylist():
            assert row["key"] not in status  # every source exactly once
            status[row["key"]] = row
    assert {k: r["status"] for k, r in status.items()} == expected
    assert all(r["reason"] for r in status.values() if r["status"] != "ok")
    assert "decompression bomb" in status["bomb.png"]["reason"]
    assert summary.rows == sum(v == "ok" for v in expected.values())
    assert summary.failed == 4 and summary.skipped == {"gray": 2, "toned": 1}
    assert summary.rows + summary.failed + sum(summary.skipped.values()) == summary.sources == len(corpus)
    on_disk = json.loads(store.read("summary.json"))
    assert on_disk["rows"] == summary.rows and on_disk["failed"] == 4
    rows = [r for i in range(4) for r in table_from_bytes(store.read(shard_key(i))).to_pylist()]
    assert sorted(r["key"] for r in rows) == sorted(k for k, v in expected.items() if v == "ok")
    strip = next(r for r in rows if r["key"] == "strip 1x5000.png")
    assert (strip["width"], strip["height"]) == (1, 5000)
    rotated = next(r for r in rows if r["key"] == "rotated.jpg")
    assert (rotated["width"], rotated["height"]) == (48, 64)  # EXIF orientation 8 turns 64x48 upright


def test_rerun_reuses_committed_shards_and_rebuilds_the_rest(archive: str, store_uri: str) -> None:
    dest = store_uri.rstrip("/") + "/dataset"
    first = build_dataset(archive, dest, size=32, shard_size=4)
    store = open_store(dest)
    before = store.read(shard_key(1))
    store.delete(status_key(2))  # a crash after writing shard 2's rows, before its commit
    second = build_dataset(archive, dest, size=32, shard_size=4)
    assert second.reused_shards == 3 and second.rows == first.rows
    assert store.read(shard_key(1)) == before


def test_changed_source_rebuilds_its_shard_and_drops_stale_shards(archive: str, store_uri: str) -> None:
    dest = store_uri.rstrip("/") + "/dataset"
    build_dataset(archive, dest, size=32, shard_size=4)
    src = open_store(archive)
    for key in [o.key for o in plan_manifest(archive).objects][8:]:
        src.delete(key)  # the archive shrinks to 8 images: 2 shards
    summary = build_dataset(archive, dest, size=32, shard_size=4)
    assert summary.sources == 8 and len(summary.shards) == 2
    keys = {o.key for o in open_store(dest).list()}
    assert shard_key(2) not in keys and status_key(3) not in keys


def test_storage_errors_propagate_for_a_retry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = str(tmp_path / "archive")
    _fill(archive, bad_corpus())
    calls = {"n": 0}
    from colorize_core.storage import local as storage

    original = storage.LocalStore.read

    def flaky(self: storage.LocalStore, key: str) -> bytes:
        calls["n"] += 1
        if calls["n"] == 2:
            raise StorageError("simulated network error")
        return original(self, key)

    monkeypatch.setattr(storage.LocalStore, "read", flaky)
    items = plan_manifest(archive, 4).shard(0)
    with pytest.raises(StorageError):
        build_shard(archive, str(tmp_path / "ds"), 0, items, 32)
    assert not open_store(str(tmp_path / "ds")).exists(status_key(0))  # nothing committed
    assert build_shard(archive, str(tmp_path / "ds"), 0, items, 32).rows >= 1  # the retry succeeds


def test_training_data_from_shards(archive: str, store_uri: str) -> None:
    dest = store_uri.rstrip("/") + "/dataset"
    summary = build_dataset(archive, dest, size=32, shard_size=4)
    data = open_training_data(dest, 24)
    assert isinstance(data, ShardImages) and len(data) == summary.rows
    assert data.blocks is not None and sum(data.blocks) == summary.rows
    sampler = StepBatchSampler(len(data), 3, seed=0, start_step=0, total_steps=4, blocks=data.blocks)
    batches = list(sampler)
    x = data[batches[0][0]]
    assert x.shape == (3, 24, 24) and x.dtype == torch.uint8 and int(x.max()) > int(x.min())  # a photo, not a flat fill
    assert data.validation_images(2).shape == (2, 3, 24, 24)


def test_block_shuffle_keeps_rows_of_a_window_together() -> None:
    blocks = [5, 5, 5, 5]
    s = StepBatchSampler(20, 5, seed=3, start_step=0, total_steps=4, blocks=blocks)
    order = [i for batch in s for i, _ in batch]
    assert sorted(order) == list(range(20))
    first_window = {i // 5 for i in order[:10]}
    assert len(first_window) == 2  # the first 10 rows come from exactly two shards


@pytest.mark.slow  # seconds of work: `make test`, not test-fast
def test_a_shard_of_a_big_manifest_is_read_alone(store_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from colorize_core.archive.listing import ListedObject, Manifest, read_manifest, read_manifest_shard, write_manifest
    from colorize_core.storage.stores import split_uri

    objects = [ListedObject(f"box {i // 100}/photo_{i:05d}.jpg", 1000 + i, f"{i:032x}") for i in range(200_000)]
    uri = store_uri.rstrip("/") + "/plans/big.parquet"
    write_manifest(Manifest("s3://archive", 1000, objects), uri)
    store, key = split_uri(uri)
    total = store.size(key)
    fetched: list[int] = []
    original = type(store).read_range

    def counting(self, k: str, start: int, length: int) -> bytes:  # type: ignore[no-untyped-def]
        data = original(self, k, start, length)
        fetched.append(len(data))
        return data

    monkeypatch.setattr(type(store), "read_range", counting)
    assert read_manifest_shard(uri, 37) == ("s3://archive", objects[37_000:38_000])
    assert sum(fetched) < total / 5  # the footer and one row group of 200, not the file
    assert read_manifest_shard(uri, 199)[1] == objects[199_000:] and read_manifest_shard(uri, 200)[1] == []
    assert read_manifest(uri).objects == objects  # the whole file still reads as one manifest
