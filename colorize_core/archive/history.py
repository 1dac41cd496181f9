"""The metadata history of a destination: every colorization run's rows, under
`DEST/_colorize/metadata/`, read whole or a batch at a time (planning.py and summary.py keep only
what they need of each batch), its compaction, and the pruning of finished runs' plans.

Each shard of each run commits one small Parquet file (`<run_id>-shard-NNNNN.parquet`). A nightly
schedule over years makes tens of thousands of them, and planning reads the whole history every
night, so `compact_history` folds the files of finished runs into one `compacted-*.parquet`
file. It is safe to crash at any point and to run twice at once:
- the compacted file lists the files it absorbed (in its Parquet metadata); readers skip those
  files even if the crash came before they were deleted;
- readers keep one row per (run_id, key), so two compactions holding the same rows count once.
Only runs older than `min_age` are folded: a run still in progress, or whose parent flow has yet
to read its shard files, is left alone (a scale-out run waits at most 24 h for its shards).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from colorize_core.archive.layout import CLAIMS_PREFIX, COMPACTED, META_PREFIX, PLANS_PREFIX, compacted_key, run_started
from colorize_core.storage.objects import ObjectInfo, ObjectNotFound, ObjectStore
from colorize_core.storage.ranges import RangeReader
from colorize_core.storage.records import OUTPUT_SCHEMA, output_table_from_bytes, rows_to_table, table_metadata, table_to_bytes
from colorize_core.storage.stores import open_store

MIN_AGE = timedelta(hours=48)
T = TypeVar("T")
# Metadata files up to this size are read whole (one GET); a bigger one (a compacted year of
# runs) through ranged reads of the columns asked for, a batch at a time.
WHOLE_READ_BYTES = 16 << 20
BATCH_ROWS = 1 << 16


def _files(store: ObjectStore) -> list[str]:
    return [o.key for o in store.list(META_PREFIX) if o.key.endswith(".parquet")]


def _tables(store: ObjectStore, keys: Sequence[str], columns: Sequence[str] | None) -> list[pa.Table]:
    """Tables of the live files among `keys`: compacted files first (they say which files they
    absorbed), then the rest. A row may be in two of them (two compactions at once): whoever
    counts rows keeps one per (run_id, key)."""
    compacted = [k for k in keys if k[len(META_PREFIX) :].startswith(COMPACTED)]
    tables: list[tuple[str, pa.Table]] = []
    absorbed: set[str] = set()
    for key in compacted:
        table = output_table_from_bytes(store.read(key), columns=columns)
        absorbed.update(table_metadata(table).get("absorbed", []))
        tables.append((key, table))
    tables = [(k, t) for k, t in tables if k not in absorbed]  # a newer compaction folded it in
    for key in keys:
        if key not in absorbed and key not in compacted:
            tables.append((key, output_table_from_bytes(store.read(key), columns=columns)))
    return [t for _, t in tables]


def _parquet(store: ObjectStore, obj: ObjectInfo) -> pq.ParquetFile:
    source = io.BytesIO(store.read(obj.key)) if obj.size <= WHOLE_READ_BYTES else RangeReader(store, obj.key, size=obj.size)
    return pq.ParquetFile(source)  # type: ignore[arg-type]  # RangeReader is a seekable raw file


def live_files(store: ObjectStore) -> list[ObjectInfo]:
    """The live metadata files, compacted files first: those no compaction absorbed (see
    `_tables`), learnt from the compacted files' footers alone."""
    files = sorted((o for o in store.list(META_PREFIX) if o.key.endswith(".parquet")), key=lambda o: o.key)
    compacted = [o for o in files if o.key[len(META_PREFIX) :].startswith(COMPACTED)]
    absorbed: set[str] = set()
    for obj in compacted:
        with pq.ParquetFile(RangeReader(store, obj.key, size=obj.size)) as footer:  # type: ignore[arg-type]
            absorbed.update(table_metadata(footer.schema_arrow.empty_table()).get("absorbed", []))
    first = {o.key for o in compacted}
    return [o for o in compacted if o.key not in absorbed] + [o for o in files if o.key not in absorbed and o.key not in first]


def _batches(store: ObjectStore, files: list[ObjectInfo], columns: Sequence[str], keep: Callable[[pa.RecordBatch], pa.RecordBatch] | None) -> Iterator[pa.RecordBatch]:
    """The rows of `files` (the live files) as record batches of `columns` (a column an older
    file lacks reads as nulls), each passed through `keep` (a filter) when given: a year of
    history is never in memory at once. A row may come twice (see `_tables`): for sets, not
    counts."""
    for obj in files:
        parquet = _parquet(store, obj)
        present = set(parquet.schema_arrow.names)
        for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=[c for c in columns if c in present]):
            arrays = [batch.column(c) if c in present else pa.nulls(batch.num_rows, OUTPUT_SCHEMA.field(c).type) for c in columns]
            out = pa.RecordBatch.from_arrays(arrays, names=list(columns))
            out = keep(out) if keep is not None else out
            if out.num_rows:
                yield out


@dataclass(frozen=True)
class Scan:
    table: pa.Table
    compacted_files: int  # live compacted files read: with more than one, a row may come twice


def scan_history(dest: str, columns: Sequence[str], keep: Callable[[pa.RecordBatch], pa.RecordBatch] | None = None, attempts: int = 3) -> pa.Table:
    """The rows under `dest` that `keep` keeps (all when None), with `columns`, as one table.
    Memory holds what is kept, plus one batch."""
    return scan_history_files(dest, columns, keep, attempts).table


def scan_history_files(dest: str, columns: Sequence[str], keep: Callable[[pa.RecordBatch], pa.RecordBatch] | None = None, attempts: int = 3) -> Scan:
    """`scan_history`, with what the one listing of the files it read says of them."""
    store = open_store(dest)
    schema = pa.schema([OUTPUT_SCHEMA.field(c) for c in columns])
    if keep is not None:  # keep may change the columns' types (dictionary-encode them, say)
        schema = keep(pa.RecordBatch.from_pylist([], schema=schema)).schema

    def read() -> Scan:
        files = live_files(store)
        table = pa.Table.from_batches(list(_batches(store, files, columns, keep)), schema=schema)
        return Scan(table, sum(o.key[len(META_PREFIX) :].startswith(COMPACTED) for o in files))

    return _listed_again(read, attempts)


def _sorted_codes(column: pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
    """A string column, dictionary-encoded or not, as codes whose order is its values' order,
    and those values, sorted."""
    if len(column) == 0:
        return np.zeros(0, dtype=np.int64), pa.array([], pa.string())
    if not pa.types.is_dictionary(column.type):
        column = pa.chunked_array([column.combine_chunks().dictionary_encode()])
    column = pa.table({"c": column}).unify_dictionaries()["c"]  # one dictionary for every chunk
    values = column.chunk(0).dictionary
    by_value = pc.sort_indices(values).to_numpy()
    position = np.empty(len(values), dtype=np.int64)
    position[by_value] = np.arange(len(values))
    codes = np.concatenate([chunk.indices.to_numpy(zero_copy_only=False) for chunk in column.chunks])
    return position[codes], pc.take(values, pa.array(by_value))


def latest_rows(table: pa.Table) -> pa.Table:
    """Each key's latest row (by processed_at, then run id: run ids sort by their start), with
    `last_run`, the greatest run id among its rows: which row decides a source's state, for
    `colorize status` (summary.py) and for planning's known failures (planning.py). Rows are ranked by recency with numpy and
    each key keeps its highest rank in one group-by: no copy of the history is sorted."""
    run, run_ids = _sorted_codes(table["run_id"])
    at = pc.fill_null(pc.cast(table["processed_at"], pa.int64()), 0).to_numpy()
    order = np.lexsort((run, at))  # by time, then run id
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    best = pa.table({"key": table["key"], "rank": rank, "run": run}).group_by("key").aggregate([("rank", "max"), ("run", "max")])
    latest = table.take(pa.array(order[best["rank_max"].to_numpy()])).drop_columns(["key"])
    return latest.add_column(0, "key", best["key"]).append_column("last_run", pc.take(run_ids, best["run_max"]))


def _read(store: ObjectStore, keys: Sequence[str], columns: Sequence[str] | None) -> list[dict[str, Any]]:
    """Rows of the live files among `keys`, one per (run_id, key)."""
    want = None if columns is None else sorted(set(columns) | {"run_id", "key"})
    rows: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for table in _tables(store, keys, want):
        for row in table.to_pylist():
            ident = (row["run_id"], row["key"])
            if ident not in seen:
                seen.add(ident)
                rows.append(row if columns is None else {c: row[c] for c in columns})
    return rows


def _listed_again(read: Callable[[], T], attempts: int) -> T:
    """`read()`, again while a compaction elsewhere deletes a file after our listing (its rows
    are then in a compacted file that listing missed)."""
    for attempt in range(attempts):
        try:
            return read()
        except ObjectNotFound:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def read_output_rows(dest: str, columns: list[str] | None = None, attempts: int = 3) -> list[dict[str, Any]]:
    """Every metadata row written under `dest`, once each."""
    store = open_store(dest)
    return _listed_again(lambda: _read(store, sorted(_files(store)), columns), attempts)


@dataclass(frozen=True)
class Compaction:
    key: str | None  # the compacted file written, or None when there was too little to fold
    files: int  # files folded into it
    rows: int


def compact_history(dest: str, *, min_files: int = 64, min_age: timedelta = MIN_AGE, now: datetime | None = None) -> Compaction:
    """Fold finished runs' metadata files (and earlier compacted files) into one file, when at
    least `min_files` such files exist; then delete what was folded."""
    store = open_store(dest)
    cutoff = (now or datetime.now(timezone.utc)) - min_age
    keys = sorted(_files(store))
    foldable = []
    for key in keys:
        started = run_started(key)
        if key[len(META_PREFIX) :].startswith(COMPACTED) or (started is not None and started < cutoff):
            foldable.append(key)
    if len(foldable) < min_files:
        return Compaction(None, 0, 0)
    rows = _read(store, foldable, columns=None)
    key = compacted_key(now or datetime.now(timezone.utc))
    table = rows_to_table(rows, OUTPUT_SCHEMA)
    # Written before anything is deleted: from here on readers skip the absorbed files.
    store.write(key, table_to_bytes(table, metadata={"absorbed": foldable}))
    for old in foldable:
        store.delete(old)
    return Compaction(key, len(foldable), len(rows))


def prune_plans(dest: str, *, min_age: timedelta = MIN_AGE, now: datetime | None = None) -> int:
    """Delete the plan manifests, and the shard claims (claims.py) a run that ended early left,
    of runs older than `min_age` (only a running run's shard tasks read them); returns how many
    plans went."""
    store = open_store(dest)
    cutoff = (now or datetime.now(timezone.utc)) - min_age
    for claim in [o.key for o in store.list(CLAIMS_PREFIX) if (started := run_started(o.key)) is not None and started < cutoff]:
        store.delete(claim)
    old = [o.key for o in store.list(PLANS_PREFIX) if (started := run_started(o.key)) is not None and started < cutoff]
    for key in old:
        store.delete(key)
    return len(old)
