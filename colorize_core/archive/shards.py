"""Colorizing an archive in object storage, one shard at a time, incrementally.

For each source image: read, decode, colorize (in batches), write the colour image under the
destination at the same relative key, and record one row (records.OUTPUT_SCHEMA) in the shard's
metadata, committed in parts (`_Parts`; the last is `_colorize/metadata/<run_id>-shard-NNNNN.parquet`;
history.py reads and compacts them). A bad image, or a
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
from dataclasses import dataclass
from functools import partial
from itertools import islice
from typing import Any

import pyarrow as pa

from colorize_core.archive.layout import META_PREFIX, metadata_key, overlap, shard_of
from colorize_core.archive.listing import ListedObject, listing_table, objects_of, with_shards
from colorize_core.archive.outcomes import PlanSummary, ShardOutcome
from colorize_core.archive.planning import plan_listing
from colorize_core.archive.steps import Colorized, Ended, Loaded, colorize_stages, load, run_stages, write_output
from colorize_core.model.checkpoint import read_model_id
from colorize_core.model.infer import Colorizer
from colorize_core.monochrome import decision_id
from colorize_core.storage.credentials import ContentSigner
from colorize_core.storage.errors import check_stop
from colorize_core.storage.objects import ObjectStore
from colorize_core.storage.records import OUTPUT_SCHEMA, rows_to_table, table_from_bytes, table_to_bytes
from colorize_core.storage.stores import open_store


def finished_shards(dest: str, run_id: str) -> int:
    """How many of a run's shards have committed their last part (one LIST of this run's
    metadata files): a parent's progress while the shards run as flow runs elsewhere."""
    last = [obj.key for obj in open_store(dest).list(f"{META_PREFIX}{run_id}-shard-")]
    return sum(key == metadata_key(run_id, shard_of(key)) for key in last)


def run_outcomes(dest: str, run_id: str, samples_per_shard: int = 3) -> list[ShardOutcome]:
    """Rebuild a run's shard outcomes from its metadata files (a shard's parts together; a shard
    without its last part did not finish and has none): what a parent flow reads when its shards
    ran as flow runs on other machines."""
    store = open_store(dest)
    by_shard: dict[int, list[str]] = {}
    for obj in store.list(f"{META_PREFIX}{run_id}-shard-"):
        by_shard.setdefault(shard_of(obj.key), []).append(obj.key)
    outcomes = []
    for shard, keys in sorted(by_shard.items()):
        if metadata_key(run_id, shard) not in keys:
            continue
        rows = [r for key in sorted(keys) for r in table_from_bytes(store.read(key), columns=["key", "output_key", "status", "error"]).to_pylist()]
        outcomes.append(_outcome(shard, rows, samples_per_shard, 0.0, metadata_key(run_id, shard)))
    return outcomes


def _outcome(shard: int, rows: list[dict[str, Any]], samples: int, seconds: float, key: str) -> ShardOutcome:
    return ShardOutcome(
        shard,
        counts=dict(Counter(r["status"] for r in rows)),
        failures=[(r["key"], r["error"]) for r in rows if r["status"] == "failed"],
        samples=[(r["key"], r["output_key"]) for r in rows if r["status"] == "ok"][:samples],
        seconds=seconds,
        metadata_key=key,
    )


@dataclass(frozen=True)
class ArchivePlan:
    source: str
    dest: str
    model_id: str
    todo: pa.Table  # LISTING_SCHEMA rows still to do, in key order
    already_done: int
    shard_size: int
    known_failed: int = 0  # listed sources left alone: known failures with the same etag

    @property
    def num_shards(self) -> int:
        return -(-self.todo.num_rows // self.shard_size)

    def shard(self, index: int) -> list[ListedObject]:
        return objects_of(self.todo.slice(index * self.shard_size, self.shard_size))

    def manifest(self) -> pa.Table:
        """The plan as a manifest table (MANIFEST_SCHEMA), for `listing.write_plan`."""
        return with_shards(self.todo, self.shard_size)

    def summary(self) -> PlanSummary:
        return PlanSummary(self.model_id, self.todo.num_rows, self.already_done, self.known_failed, self.num_shards)


def check_locations(source: str, dest: str) -> None:
    """Neither the destination nor the source may hold the other (layout.overlap says why)."""
    problem = overlap(source, dest)
    if problem is not None:
        raise ValueError(f"the destination {dest} {problem} {source}: choose a destination apart from it")


def plan_archive(
    source: str, dest: str, model_id: str, shard_size: int, *, retry_failed: bool = False, inventory: str | None = None, skip_colour: bool = True
) -> ArchivePlan:
    """List the source (or read its listing from the S3 Inventory report whose manifest.json is
    `inventory`) and keep what has no ok row for this model yet (nor, when `skip_colour`, a row
    skipped as colour by today's decision), less the known failures (failures.py) whose etag has
    not changed, unless `retry_failed`. In Arrow throughout (planning.py): its cost is columns,
    not Python objects, at any archive size."""
    check_locations(source, dest)
    src, out = open_store(source), open_store(dest)
    decision = decision_id() if skip_colour else None
    planned = plan_listing(listing_table(src, out, inventory=inventory), dest, model_id, retry_failed=retry_failed, colour_decision=decision)
    return ArchivePlan(src.uri, out.uri, model_id, planned.todo, planned.already_done, shard_size, planned.known_failed)


# A shard commits its rows every PART_ROWS photos or PART_SECONDS, whichever comes first.
PART_ROWS = 500
PART_SECONDS = 60.0

_colorizers: dict[tuple[str, str, int | None], Colorizer] = {}
_colorizers_lock = threading.Lock()


def shared_colorizer(checkpoint: str, device: str = "auto", batch_size: int | None = None) -> Colorizer:
    """One model per process and checkpoint: shard tasks in threads share it (inference only).
    The checkpoint's header is read each time (two small ranged reads): a model retrained to the
    same URI is loaded anew, never served stale by a long-lived worker; the old one is let go."""
    key = (checkpoint, device, batch_size)
    model_id = read_model_id(checkpoint)
    with _colorizers_lock:
        held = _colorizers.get(key)
        if held is None or held.model_id != model_id:
            _colorizers[key] = Colorizer.from_checkpoint(checkpoint, device=device, batch_size=batch_size)
        return _colorizers[key]


def _prefetch(pool: ThreadPoolExecutor, items: list[ListedObject], load: Callable[[ListedObject], Loaded], ahead: int) -> Iterator[Loaded]:
    """Results of `load` in item order, keeping up to `ahead` loads in flight."""
    pending: deque[Future[Loaded]] = deque()
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
    items: list[ListedObject],
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
    signer: ContentSigner | None = None,
    part_rows: int = PART_ROWS,
    part_seconds: float = PART_SECONDS,
) -> ShardOutcome:
    """Colorize `items` from `source` into `dest` and write the shard's metadata, in parts
    (`_Parts`: every `part_rows` rows or `part_seconds`, whichever first); the items this run
    already committed (a retried task) are not done again.

    Reading and decoding run ahead in `io_threads` threads, and encoding and writing run behind,
    while the model works on the current batch (Pillow, boto3 and torch release the GIL).
    `io_threads=0` does everything in this thread, in order: the plain path.
    `device_jpeg`: decode and encode plain JPEGs on the model's device (steps.py); None means
    on CUDA only, where nvJPEG frees the CPUs from the work that would otherwise bound the run.
    `label`: each output's metadata says a trained model colorized it, with the model id and the
    source key, and keeps the source's EXIF (storage/provenance.py); False writes bare outputs.
    `signer`: each output carries Content Credentials, signed last (storage/credentials.py)."""
    started = time.perf_counter()
    src, out = open_store(source), open_store(dest)
    model_id = colorizer.model_id
    use_device = colorizer.device.type == "cuda" if device_jpeg is None else device_jpeg
    parts = _Parts(out, run_id, shard, items, part_rows, part_seconds)
    committed = parts.already()
    todo = [obj for obj in items if obj.key not in committed]
    pool = ThreadPoolExecutor(max_workers=io_threads) if io_threads > 0 else None
    writes: list[Future[dict[str, Any]]] = []
    # Each write in flight holds its colorized image until it is encoded (a 100 MP output at 16
    # bits is 600 MB): at most two per I/O thread, so the model waits for the writers instead of
    # memory filling up with a shard's outputs.
    writes_in_flight = threading.BoundedSemaphore(2 * max(io_threads, 1))

    def store_later(done: Colorized) -> None:
        if pool:
            writes_in_flight.acquire()
            try:
                fut = pool.submit(write_output, out, done, model_id, run_id, label, signer)
            except BaseException:
                writes_in_flight.release()
                raise
            fut.add_done_callback(lambda _: writes_in_flight.release())
            writes.append(fut)
        else:
            parts.add(write_output(out, done, model_id, run_id, label, signer))

    stages = colorize_stages(colorizer, run_id, skip_colour)
    check_stop(run_id)  # a shard queued behind a run that is stopping does not start
    try:
        load_one = partial(load, src, model_id=model_id, run_id=run_id, skip_colour=skip_colour, device_jpeg=use_device, signing=signer is not None)
        loaded: Iterable[Loaded] = _prefetch(pool, todo, load_one, 2 * colorizer.batch_size) if pool else map(load_one, todo)
        # Each batch is held by this frame alone (a generator such as `batched` would keep its own
        # reference while suspended): run_stages empties it, so a stage frees what it is done with.
        pending = iter(loaded)
        while batch := list(islice(pending, colorizer.batch_size)):
            check_stop(run_id)  # a stopping process or run abandons the rest of the shard uncommitted
            size = len(batch)
            for item in run_stages(stages, batch):
                if isinstance(item, Ended):  # failed or skipped before the model
                    parts.add(item.row)
                else:
                    store_later(item)
            while writes and writes[0].done():
                parts.add(writes.pop(0).result())  # a failed write (StorageError) propagates: its part stays uncommitted
            parts.maybe_commit()
            if on_image is not None:
                on_image(size)
        for fut in writes:
            parts.add(fut.result())
        check_stop(run_id)
    finally:
        if pool:
            pool.shutdown(wait=True, cancel_futures=True)
    rows = parts.finish()
    return _outcome(shard, rows, samples, time.perf_counter() - started, metadata_key(run_id, shard))


def _committed_parts(out: ObjectStore, run_id: str, shard: int) -> tuple[int, list[dict[str, Any]]]:
    """(parts, rows) this run has already committed of this shard: a retried shard task goes on
    after them instead of writing their rows twice."""
    prefix = metadata_key(run_id, shard, 0).rsplit(".p", 1)[0] + ".p"
    keys = sorted(o.key for o in out.list(prefix))
    return len(keys), [r for key in keys for r in table_from_bytes(out.read(key)).to_pylist()]


class _Parts:
    """A shard's rows, committed in parts as they become final (the source's output written, or
    no output to write): every `rows` rows or `seconds` seconds, whichever comes first, so a
    crash loses at most a part's work; the last part, `metadata_key(run_id, shard)`, marks the
    shard done. Each part's rows are in plan order."""

    def __init__(self, out: ObjectStore, run_id: str, shard: int, items: list[ListedObject], rows: int, seconds: float) -> None:
        self.out, self.run_id, self.shard = out, run_id, shard
        self.every_rows, self.every_s = rows, seconds
        self.position = {obj.key: i for i, obj in enumerate(items)}
        self.parts, self.committed = _committed_parts(out, run_id, shard)
        self.ready: dict[str, dict[str, Any]] = {}
        self.last = time.monotonic()

    def already(self) -> set[str]:
        return {r["key"] for r in self.committed}

    def add(self, row: dict[str, Any]) -> None:
        self.ready[row["key"]] = row

    def maybe_commit(self) -> None:
        if len(self.ready) >= self.every_rows or (self.ready and time.monotonic() - self.last >= self.every_s):
            self._write(metadata_key(self.run_id, self.shard, self.parts))
            self.parts += 1

    def finish(self) -> list[dict[str, Any]]:
        """Commit the last part (even with no rows: it says the shard is done); all its rows."""
        self._write(metadata_key(self.run_id, self.shard))
        return self.committed

    def _write(self, key: str) -> None:
        ordered = sorted(self.ready.values(), key=lambda r: self.position[r["key"]])
        self.out.write(key, table_to_bytes(rows_to_table(ordered, OUTPUT_SCHEMA)))
        self.committed.extend(ordered)
        self.ready.clear()
        self.last = time.monotonic()
