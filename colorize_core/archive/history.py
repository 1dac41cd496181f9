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
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from colorize_core.archive.layout import COMPACTED, META_PREFIX, PLANS_PREFIX, compacted_key, run_started
from colorize_core.storage.records import OUTPUT_SCHEMA, rows_to_table, table_from_bytes, table_metadata, table_to_bytes
from colorize_core.storage.stores import ObjectNotFound, ObjectStore, open_store

MIN_AGE = timedelta(hours=48)


def _files(store: ObjectStore) -> list[str]:
    return [o.key for o in store.list(META_PREFIX) if o.key.endswith(".parquet")]


def _read(store: ObjectStore, keys: Sequence[str], columns: Sequence[str] | None) -> list[dict[str, Any]]:
    """Rows of the live files among `keys`: compacted files first (they say which files they
    absorbed), then the rest; one row per (run_id, key)."""
    compacted = [k for k in keys if k[len(META_PREFIX) :].startswith(COMPACTED)]
    want = None if columns is None else sorted(set(columns) | {"run_id", "key"})
    tables: list[tuple[str, Any]] = []
    absorbed: set[str] = set()
    for key in compacted:
        table = table_from_bytes(store.read(key), columns=want)
        absorbed.update(table_metadata(table).get("absorbed", []))
        tables.append((key, table))
    tables = [(k, t) for k, t in tables if k not in absorbed]  # a newer compaction folded it in
    for key in keys:
        if key not in absorbed and key not in compacted:
            tables.append((key, table_from_bytes(store.read(key), columns=want)))
    rows: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for _, table in tables:
        for row in table.to_pylist():
            ident = (row["run_id"], row["key"])
            if ident not in seen:
                seen.add(ident)
                rows.append(row if columns is None else {c: row[c] for c in columns})
    return rows


def read_output_rows(dest: str, columns: list[str] | None = None, attempts: int = 3) -> list[dict[str, Any]]:
    """Every metadata row written under `dest`, once each."""
    store = open_store(dest)
    for attempt in range(attempts):
        try:
            return _read(store, sorted(_files(store)), columns)
        except ObjectNotFound:
            # A compaction elsewhere deleted a file after our listing: its rows are now in a
            # compacted file this listing missed. List again.
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


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
    failing: list[tuple[str, str]] = field(default_factory=list)  # (key, error) of sources still failing
    pending: list[tuple[str, str]] = field(default_factory=list)  # (key, run id) planned by a run that did not finish them

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
    rows = read_output_rows(dest, columns=["key", "model_id", "status", "error", "run_id", "processed_at"])
    pending = planned_not_done(dest, rows)
    latest: dict[str, dict[str, Any]] = {}
    runs: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        runs.setdefault(row["run_id"], []).append(row)
        held = latest.get(row["key"])
        if held is None or (row["processed_at"], row["run_id"]) >= (held["processed_at"], held["run_id"]):
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
    if pending:
        states["pending"] = len(pending)
    return HistorySummary(
        sources=len(set(latest) | set(pending)),
        latest=dict(states),
        ok_by_model=dict(Counter(r["model_id"] for r in settled if r["status"] == "ok")),
        runs=run_list,
        failing=sorted((r["key"], r["error"]) for r in settled if r["status"] == "failed"),
        pending=sorted(pending.items()),
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
