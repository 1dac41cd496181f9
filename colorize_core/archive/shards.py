"""Colorizing an archive in object storage, one shard at a time, incrementally.

For each source image: read, decode, colorize (in batches), write the colour image under the
destination at the same relative key, and record one row (records.OUTPUT_SCHEMA) in the shard's
metadata file `_colorize/metadata/<run_id>-shard-NNNNN.parquet` (history.py reads and compacts them). A bad image, or a
key the destination cannot hold, is a failed row; a storage error that outlived its retries
propagates, and the shard stays uncommitted for the next run. A photo that is already in real
colour is a skipped row: colorizing it would only lose its true colours. Planning skips every source whose
(key, etag) already has an `ok` row for the same model, so a re-run after a crash, or a nightly
run over an archive that gained ten photos, processes only what is left; and every known failure
(failures.py) whose etag is unchanged, unless asked to retry them.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from colorize_core.archive.history import PLAN_COLUMNS, known_failures, ok_pairs, read_output_tables
from colorize_core.archive.layout import META_PREFIX, metadata_key, overlap
from colorize_core.archive.steps import Source, colorize_on_device, decode_on_device, load, pixel_groups, write_output
from colorize_core.data.sharding import list_images
from colorize_core.model.infer import Colorizer, batched
from colorize_core.storage.errors import check_stop
from colorize_core.storage.imageio import ColorImage, output_name_for
from colorize_core.storage.records import OUTPUT_SCHEMA, rows_to_table, table_from_bytes, table_to_bytes
from colorize_core.storage.stores import ObjectInfo, ObjectStore, open_store


def run_outcomes(dest: str, run_id: str, samples_per_shard: int = 3) -> list[ShardOutcome]:
    """Rebuild a run's shard outcomes from its metadata files: what a parent flow reads when
    its shards ran as flow runs on other machines."""
    store = open_store(dest)
    outcomes = []
    for obj in store.list(f"{META_PREFIX}{run_id}-shard-"):
        shard = int(obj.key.rsplit("-", 1)[-1].split(".")[0])
        rows = table_from_bytes(store.read(obj.key), columns=["key", "output_key", "status", "error"]).to_pylist()
        outcomes.append(
            ShardOutcome(
                shard,
                counts=dict(Counter(r["status"] for r in rows)),
                failures=[(r["key"], r["error"]) for r in rows if r["status"] == "failed"],
                samples=[(r["key"], r["output_key"]) for r in rows if r["status"] == "ok"][:samples_per_shard],
                metadata_key=obj.key,
            )
        )
    return outcomes


def done_sources(dest: str, model_id: str) -> set[tuple[str, str]]:
    """(key, etag) pairs that already have an ok row for this model."""
    return ok_pairs(read_output_tables(dest, ["key", "source_etag", "model_id", "status"]), model_id)


@dataclass(frozen=True)
class ArchivePlan:
    source: str
    dest: str
    model_id: str
    todo: list[ObjectInfo]
    already_done: int
    shard_size: int
    known_failed: int = 0  # listed sources left alone: known failures with the same etag

    @property
    def num_shards(self) -> int:
        return -(-len(self.todo) // self.shard_size)

    def shard(self, index: int) -> list[ObjectInfo]:
        return self.todo[index * self.shard_size : (index + 1) * self.shard_size]


def check_locations(source: str, dest: str) -> None:
    """Neither the destination nor the source may hold the other (layout.overlap says why)."""
    problem = overlap(source, dest)
    if problem is not None:
        raise ValueError(f"the destination {dest} {problem} {source}: choose a destination apart from it")


def plan_archive(source: str, dest: str, model_id: str, shard_size: int, *, retry_failed: bool = False, inventory: str | None = None) -> ArchivePlan:
    """List the source (or read its listing from the S3 Inventory report whose manifest.json is
    `inventory`) and keep what has no ok row for this model yet, less the known failures
    (history.known_failures) whose etag has not changed, unless `retry_failed`."""
    check_locations(source, dest)
    src, out = open_store(source), open_store(dest)
    objects = list_images(src, out, inventory=inventory)
    tables = read_output_tables(dest, PLAN_COLUMNS)
    done = ok_pairs(tables, model_id)
    known = {} if retry_failed else known_failures(tables)
    todo, known_failed = [], 0
    for o in objects:
        if (o.key, o.etag) in done:
            continue
        failure = known.get(o.key)
        if failure is not None and failure[0] == o.etag:
            known_failed += 1
            continue
        todo.append(o)
    return ArchivePlan(src.uri, out.uri, model_id, todo, len(objects) - len(todo) - known_failed, shard_size, known_failed)


@dataclass
class ShardOutcome:
    shard: int
    counts: dict[str, int] = field(default_factory=dict)
    failures: list[tuple[str, str]] = field(default_factory=list)
    samples: list[tuple[str, str]] = field(default_factory=list)  # (source key, output key), a few
    seconds: float = 0.0
    metadata_key: str = ""


_colorizers: dict[tuple[str, str, int | None], Colorizer] = {}
_colorizers_lock = threading.Lock()


def shared_colorizer(checkpoint: str, device: str = "auto", batch_size: int | None = None) -> Colorizer:
    """One model per process and checkpoint: shard tasks in threads share it (inference only)."""
    key = (checkpoint, device, batch_size)
    with _colorizers_lock:
        if key not in _colorizers:
            _colorizers[key] = Colorizer.from_checkpoint(checkpoint, device=device, batch_size=batch_size)
        return _colorizers[key]


def _prefetch(pool: ThreadPoolExecutor, items: list[ObjectInfo], load: Callable[[ObjectInfo], Source], ahead: int) -> Iterator[Source]:
    """Results of `load` in item order, keeping up to `ahead` loads in flight."""
    pending: deque[Future[Source]] = deque()
    it = iter(items)
    for obj in it:
        pending.append(pool.submit(load, obj))
        if len(pending) >= ahead:
            break
    while pending:
        yield pending.popleft().result()
        nxt = next(it, None)
        if nxt is not None:
            pending.append(pool.submit(load, nxt))


def colorize_shard(
    source: str,
    dest: str,
    items: list[ObjectInfo],
    colorizer: Colorizer,
    *,
    run_id: str,
    shard: int,
    on_image: Callable[[int], None] | None = None,
    samples: int = 3,
    skip_colour: bool = True,
    io_threads: int = 4,
    device_jpeg: bool | None = None,
    label: bool = True,
) -> ShardOutcome:
    """Colorize `items` from `source` into `dest` and write the shard's metadata file.

    Reading and decoding run ahead in `io_threads` threads, and encoding and writing run behind,
    while the model works on the current batch (Pillow, boto3 and torch release the GIL).
    `io_threads=0` does everything in this thread, in order: the plain path.
    `device_jpeg`: decode and encode plain JPEGs on the model's device (steps.py); None means
    on CUDA only, where nvJPEG frees the CPUs from the work that would otherwise bound the run.
    `label`: each output's metadata says a trained model colorized it, with the model id and the
    source key, and keeps the source's EXIF (storage/provenance.py); False writes bare outputs."""
    started = time.perf_counter()
    src, out = open_store(source), open_store(dest)
    model_id = colorizer.model_id
    use_device = colorizer.device.type == "cuda" if device_jpeg is None else device_jpeg
    rows: dict[str, dict[str, Any]] = {}
    pool = ThreadPoolExecutor(max_workers=io_threads) if io_threads > 0 else None
    writes: list[Future[dict[str, Any]]] = []
    # Each write in flight holds its colorized image until it is encoded (a 100 MP output at 16
    # bits is 600 MB): at most two per I/O thread, so the model waits for the writers instead of
    # memory filling up with a shard's outputs.
    writes_in_flight = threading.BoundedSemaphore(2 * max(io_threads, 1))

    def store_later(item: Source, out_key: str, result: bytes | ColorImage, values: dict[str, Any]) -> None:
        if pool:
            writes_in_flight.acquire()
            try:
                fut = pool.submit(write_output, out, item, out_key, result, values, model_id, run_id, label)
            except BaseException:
                writes_in_flight.release()
                raise
            fut.add_done_callback(lambda _: writes_in_flight.release())
            writes.append(fut)
        else:
            rows[item.obj.key] = write_output(out, item, out_key, result, values, model_id, run_id, label)

    check_stop(run_id)  # a shard queued behind a run that is stopping does not start
    try:
        load_one = partial(load, src, model_id=model_id, run_id=run_id, skip_colour=skip_colour, device_jpeg=use_device)
        loaded: Iterable[Source] = _prefetch(pool, items, load_one, 2 * colorizer.batch_size) if pool else map(load_one, items)
        for chunk in batched(loaded, colorizer.batch_size):
            check_stop(run_id)  # a stopping process or run abandons the shard uncommitted
            _colorize_chunk(chunk, colorizer, run_id, skip_colour, store_later)
            for item in chunk:
                if item.row is not None:  # ended before the model: failed or skipped
                    rows[item.obj.key] = item.row
            if on_image is not None:
                on_image(len(chunk))
        for fut in writes:
            row = fut.result()  # a failed write (StorageError) propagates: the shard stays uncommitted
            rows[row["key"]] = row
        check_stop(run_id)
    finally:
        if pool:
            pool.shutdown(wait=True, cancel_futures=True)
    return _commit(out, items, rows, run_id, shard, samples, started)


def _colorize_chunk(
    chunk: list[Source], colorizer: Colorizer, run_id: str, skip_colour: bool, store_later: Callable[[Source, str, bytes | ColorImage, dict[str, Any]], None]
) -> None:
    """Colorize one batch's decoded sources and hand each result to `store_later`: plain JPEGs
    on the device (decode, colorize, encode there; what it refuses falls to Pillow), the rest
    from Pillow images."""
    model_id = colorizer.model_id
    for group in pixel_groups([item for item in chunk if item.jpeg is not None]):
        decode_on_device(group, colorizer.device, model_id, run_id, skip_colour=skip_colour)
        on_device = [item for item in group if item.luma is not None]
        if on_device:
            for item, out_key, result, values in colorize_on_device(on_device, colorizer):
                store_later(item, out_key, result, values)
    todo = [item for item in chunk if item.image is not None]  # Pillow's, and the device's refusals
    if todo:
        t0 = time.perf_counter()
        colored = colorizer.colorize_keeping_depth([item.image for item in todo])  # type: ignore[misc]  # 16-bit in, 16-bit out
        infer_each = (time.perf_counter() - t0) / len(todo)
        for item, result in zip(todo, colored):
            item.image = None  # free the decoded source early
            store_later(item, output_name_for(item.obj.key), result, {"infer_s": infer_each})


def _commit(out: ObjectStore, items: list[ObjectInfo], rows: dict[str, dict[str, Any]], run_id: str, shard: int, samples: int, started: float) -> ShardOutcome:
    """Write the shard's metadata file, one row per source in plan order, after every output:
    the rows are the commit of this shard's work. Returns its outcome."""
    ordered = [rows[obj.key] for obj in items]
    out.write(metadata_key(run_id, shard), table_to_bytes(rows_to_table(ordered, OUTPUT_SCHEMA)))
    return ShardOutcome(
        shard,
        counts=dict(Counter(r["status"] for r in ordered)),
        failures=[(r["key"], r["error"]) for r in ordered if r["status"] == "failed"],
        samples=[(r["key"], r["output_key"]) for r in ordered if r["status"] == "ok"][:samples],
        seconds=time.perf_counter() - started,
        metadata_key=metadata_key(run_id, shard),
    )
