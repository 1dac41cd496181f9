"""colorize_shard's prefetching pipeline gives the plain path's results, and fails cleanly."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from colorize_core.archive import shards
from colorize_core.archive.history import read_output_rows
from colorize_core.archive.listing import list_images
from colorize_core.archive.shards import colorize_shard
from colorize_core.model.infer import Colorizer
from colorize_core.storage.local import LocalStore
from colorize_core.storage.objects import StorageError
from colorize_core.storage.stores import open_store
from tests.badfiles import bad_corpus
from tests.conftest import gray_archive


@pytest.fixture()
def mixed_archive(tmp_path: Path) -> str:
    uri = str(tmp_path / "src")
    gray_archive(uri, 9)
    store = open_store(uri)
    for key, (data, _) in list(bad_corpus().items())[:6]:
        store.write(f"bad/{key}", data)
    return uri


def _comparable(rows: list[dict]) -> list[tuple]:
    return [(r["key"], r["status"], r["error"], r["output_key"], r["width"], r["height"], r["colourfulness"]) for r in rows]


@pytest.mark.slow  # multi-second: make test only (test-fast stays under a minute)
def test_pipelined_shard_equals_the_plain_path(mixed_archive: str, tmp_path: Path, tiny_checkpoint: Path) -> None:
    colorizer = Colorizer.from_checkpoint(tiny_checkpoint, device="cpu", batch_size=4)
    items = list_images(open_store(mixed_archive))
    plain = colorize_shard(mixed_archive, str(tmp_path / "a"), items, colorizer, run_id="r", shard=0, io_threads=0)
    piped = colorize_shard(mixed_archive, str(tmp_path / "b"), items, colorizer, run_id="r", shard=0, io_threads=4)
    rows_a, rows_b = read_output_rows(str(tmp_path / "a")), read_output_rows(str(tmp_path / "b"))
    assert [r["key"] for r in rows_a] == [o.key for o in items]  # one row per source, in order
    assert _comparable(rows_a) == _comparable(rows_b)
    assert plain.counts == piped.counts and plain.counts.get("failed", 0) >= 3
    for r in rows_a:
        if r["status"] == "ok":
            assert (tmp_path / "a" / r["output_key"]).read_bytes() == (tmp_path / "b" / r["output_key"]).read_bytes()


def test_a_failed_write_fails_the_shard_without_committing(mixed_archive: str, tmp_path: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    colorizer = Colorizer.from_checkpoint(tiny_checkpoint, device="cpu", batch_size=4)
    items = list_images(open_store(mixed_archive))
    original = LocalStore.write

    def failing_write(self: LocalStore, key: str, data: bytes) -> None:
        if key.endswith("photo_005.png"):
            raise StorageError("simulated: bucket unreachable")
        original(self, key, data)

    monkeypatch.setattr(LocalStore, "write", failing_write)
    with pytest.raises(StorageError):
        colorize_shard(mixed_archive, str(tmp_path / "out"), items, colorizer, run_id="r", shard=0, io_threads=4)
    assert read_output_rows(str(tmp_path / "out")) == []  # no metadata: the shard is redone on retry


def test_writes_in_flight_are_bounded(mixed_archive: str, tmp_path: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Slow writers hold the model back: each write in flight holds a whole colorized image."""
    # Batches of 8 read 16 sources ahead: every load is queued before the first write, so only
    # the bound keeps the model from handing every output to the one slow writer at once.
    colorizer = Colorizer.from_checkpoint(tiny_checkpoint, device="cpu", batch_size=8)
    items = list_images(open_store(mixed_archive))
    real_write = shards.write_output
    lock, pending, peak = threading.Lock(), [0], [0]

    def slow_write(*args: Any) -> dict[str, Any]:
        time.sleep(0.05)  # a slow store: the model colorizes faster than this writes
        return real_write(*args)

    def finished(_: Future[Any]) -> None:
        with lock:
            pending[0] -= 1

    class CountingPool(ThreadPoolExecutor):
        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
            fut = super().submit(fn, *args, **kwargs)
            if fn is slow_write:
                with lock:
                    pending[0] += 1
                    peak[0] = max(peak[0], pending[0])
                fut.add_done_callback(finished)
            return fut

    monkeypatch.setattr(shards, "write_output", slow_write)
    monkeypatch.setattr(shards, "ThreadPoolExecutor", CountingPool)
    outcome = colorize_shard(mixed_archive, str(tmp_path / "out"), items, colorizer, run_id="r", shard=0, io_threads=1)
    assert outcome.counts["ok"] >= 9 and 1 <= peak[0] <= 2, (outcome.counts, peak)

