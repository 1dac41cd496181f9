"""The metadata history of a destination: every colorization run's rows, under
`DEST/_colorize/metadata/`, its summary (`colorize status`) and compaction; and the pruning of
finished runs' plans.

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

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.compute as pc

from colorize_core.archive.failures import current_judge, is_known_failure
from colorize_core.archive.layout import COMPACTED, META_PREFIX, PLANS_PREFIX, compacted_key, run_started
from colorize_core.storage.records import OUTPUT_SCHEMA, output_table_from_bytes, rows_to_table, table_from_bytes, table_metadata, table_to_bytes
from colorize_core.storage.stores import ObjectNotFound, ObjectStore, open_store

MIN_AGE = timedelta(hours=48)
T = TypeVar("T")


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


def read_output_tables(dest: str, columns: Sequence[str], attempts: int = 3) -> list[pa.Table]:
    """The metadata under `dest` as Arrow tables, one per live file, for planning: no Python
    object per row. A row may appear twice (see `_tables`): use it for sets, not counts."""
    store = open_store(dest)
    return _listed_again(lambda: _tables(store, sorted(_files(store)), columns), attempts)


PLAN_COLUMNS = ("key", "source_etag", "model_id", "status", "permanent", "judged_by", "error", "run_id", "processed_at")


def ok_pairs(tables: Sequence[pa.Table], model_id: str) -> set[tuple[str, str]]:
    """(key, etag) pairs that have an ok row for this model."""
    done: set[tuple[str, str]] = set()
    for table in tables:
        ok = table.filter(pc.and_(pc.equal(table["status"], "ok"), pc.equal(table["model_id"], model_id)))
        done.update(zip(ok.column("key").to_pylist(), ok.column("source_etag").to_pylist()))
    return done


def _recency(row: dict[str, Any]) -> tuple[Any, str]:
    """The order of a source's rows: the latest decides its state."""
    return (row["processed_at"], row["run_id"])


def known_failures(tables: Sequence[pa.Table]) -> dict[str, tuple[str, str]]:
    """key -> (etag, reason) of every source whose latest row is a known failure (failures.py):
    the next run leaves it alone while its etag is the same. Only the rows of sources that ever
    failed become Python objects."""
    failed: set[str] = set()
    for table in tables:
        failed.update(table.filter(pc.equal(table["status"], "failed")).column("key").to_pylist())
    if not failed:
        return {}
    value_set = pa.array(sorted(failed), pa.string())
    latest: dict[str, dict[str, Any]] = {}
    for table in tables:
        for row in table.filter(pc.is_in(table["key"], value_set=value_set)).to_pylist():
            held = latest.get(row["key"])
            if held is None or _recency(row) >= _recency(held):
                latest[row["key"]] = row
    judged_by = current_judge()
    return {key: (row["source_etag"], row["error"]) for key, row in latest.items() if is_known_failure(row, judged_by)}


@dataclass
class RunSummary:
    run_id: str
    counts: dict[str, int]
    started: str  # ISO time of the run's first row
    models: list[str]


@dataclass
class HistorySummary:
    """Where a destination stands: each source's latest outcome, its models, its recent runs."""

    sources: int
    latest: dict[str, int]  # status -> sources whose latest row has it
    ok_by_model: dict[str, int]  # model id -> sources whose latest row is ok with it
    runs: list[RunSummary]  # newest first
    failing: list[tuple[str, str]] = field(default_factory=list)  # (key, error) of every source still failing
    # The failing sources that are known failures (failures.py): the next run does not retry
    # them unless the file changes, or `--retry-failed`. The rest of `failing` it retries.
    known_failures: list[tuple[str, str]] = field(default_factory=list)
    pending: list[tuple[str, str]] = field(default_factory=list)  # (key, run id) planned by a run that did not finish them
    # (key, reason with the decision's figures) of every source whose latest row skipped it as a
    # real colour photo (colorize_core/monochrome.py); `--colour-photos colorize` colorizes them.
    skipped_as_colour: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def planned_not_done(dest: str, rows: list[dict[str, Any]]) -> dict[str, str]:
    """key -> run id, for every source a run planned (plans of the last `MIN_AGE`) that has no
    row from that run or a later one: what a killed or still running run has yet to do."""
    store = open_store(dest)
    # Run ids sort by their start time (layout.py): comparing them needs no host's clock.
    last_run: dict[str, str] = {}
    for row in rows:
        if row["key"] not in last_run or row["run_id"] > last_run[row["key"]]:
            last_run[row["key"]] = row["run_id"]
    pending: dict[str, str] = {}
    for obj in sorted(store.list(PLANS_PREFIX), key=lambda o: o.key):
        if run_started(obj.key) is None:
            continue
        run_id = obj.key[len(PLANS_PREFIX) :].removesuffix(".parquet")
        try:
            keys = table_from_bytes(store.read(obj.key), columns=["key"]).column("key").to_pylist()
        except ObjectNotFound:
            continue  # pruned since the listing
        for key in keys:
            seen = last_run.get(key)
            if seen is None or seen < run_id:
                pending[key] = run_id
            else:
                pending.pop(key, None)  # an earlier plan's source that this later run did
    return pending


def summarize(dest: str) -> HistorySummary:
    """Summarize every row under `dest` (the latest row of each source decides its state; a
    source planned since then and not done yet is `pending`)."""
    rows = read_output_rows(dest, columns=["key", "model_id", "status", "error", "permanent", "judged_by", "run_id", "processed_at"])
    pending = planned_not_done(dest, rows)
    latest: dict[str, dict[str, Any]] = {}
    runs: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        runs.setdefault(row["run_id"], []).append(row)
        held = latest.get(row["key"])
        if held is None or _recency(row) >= _recency(held):
            latest[row["key"]] = row
    run_list = [
        RunSummary(
            run_id,
            dict(Counter(r["status"] for r in rs)),
            min(r["processed_at"] for r in rs).isoformat(),
            sorted({r["model_id"] for r in rs}),
        )
        for run_id, rs in runs.items()
    ]
    run_list.sort(key=lambda r: r.started, reverse=True)
    settled = [r for key, r in latest.items() if key not in pending]
    states = Counter(r["status"] for r in settled)
    failing = sorted((r["key"], r["error"]) for r in settled if r["status"] == "failed")
    known = sorted((r["key"], r["error"]) for r in settled if is_known_failure(r))
    if pending:
        states["pending"] = len(pending)
    return HistorySummary(
        sources=len(set(latest) | set(pending)),
        latest=dict(states),
        ok_by_model=dict(Counter(r["model_id"] for r in settled if r["status"] == "ok")),
        runs=run_list,
        failing=failing,
        known_failures=known,
        pending=sorted(pending.items()),
        skipped_as_colour=sorted((r["key"], r["error"]) for r in settled if r["status"] == "skipped"),
    )


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
    """Delete the plan manifests of runs older than `min_age` (only a running run's shard tasks
    read its plan); returns how many went."""
    store = open_store(dest)
    cutoff = (now or datetime.now(timezone.utc)) - min_age
    old = [o.key for o in store.list(PLANS_PREFIX) if (started := run_started(o.key)) is not None and started < cutoff]
    for key in old:
        store.delete(key)
    return len(old)
