"""Where a destination stands (`colorize status`): each source's latest outcome, its models,
its recent runs, what a run planned and has not done, in Arrow group-bys over the history
(history.py): a status of ten million photos makes Python objects only for the sources it lists
(failing, skipped, pending), never one per photo.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from colorize_core.archive.failures import is_known_failure
from colorize_core.archive.history import latest_rows, scan_history, scan_history_files
from colorize_core.archive.layout import PLANS_PREFIX, run_started
from colorize_core.storage.objects import ObjectNotFound
from colorize_core.storage.records import table_from_bytes
from colorize_core.storage.stores import open_store

# The history is read with these columns; a listed source's (failed, skipped) reason and
# failure columns are read afterwards for those sources only.
SUMMARY_COLUMNS = ("key", "model_id", "status", "run_id", "processed_at")
REASON_COLUMNS = ("key", "run_id", "error", "permanent", "judged_by")
_REPEATED = ("model_id", "status", "run_id")  # few distinct values: dictionary-encoded as read


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
    # real colour photo (colorize_core/monochrome/); `--colour-photos colorize` colorizes them.
    skipped_as_colour: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _encoded(batch: pa.RecordBatch) -> pa.RecordBatch:
    arrays = [pc.dictionary_encode(batch.column(c)) if c in _REPEATED else batch.column(c) for c in batch.schema.names]
    return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)


def _distinct_rows(table: pa.Table) -> pa.Table:
    """One row per (run_id, key): two compactions at once may both hold a run's rows."""
    indexed = pa.table({"run_id": table["run_id"], "key": table["key"], "row": pa.array(np.arange(table.num_rows))})
    first = indexed.group_by(["run_id", "key"]).aggregate([("row", "min")])["row_min"]
    return table.take(pa.array(np.sort(first.to_numpy())))


def planned_not_done(dest: str, latest: pa.Table) -> pa.Table:
    """(key, run_id) of every source a run planned (plans of the last `history.MIN_AGE`, which
    pruning keeps) whose latest plan's run, or a later one, has no row of it: what a killed or
    still running run has yet to do. `latest`: `latest_rows`' table."""
    store = open_store(dest)
    parts = []
    for obj in sorted(store.list(PLANS_PREFIX), key=lambda o: o.key):
        if run_started(obj.key) is None:
            continue
        try:
            keys = table_from_bytes(store.read(obj.key), columns=["key"]).column("key")
        except ObjectNotFound:
            continue  # pruned since the listing
        run_id = obj.key[len(PLANS_PREFIX) :].removesuffix(".parquet")
        parts.append(pa.table({"key": keys, "run_id": pa.repeat(pa.scalar(run_id), len(keys))}))
    if not parts:
        return pa.table({"key": pa.array([], pa.string()), "run_id": pa.array([], pa.string())})
    # A source's last plan decides: pending while no row of that run or a later one exists.
    planned = pa.concat_tables(parts).group_by("key", use_threads=False).aggregate([("run_id", "max")]).rename_columns(["key", "run_id"])
    at = pc.index_in(planned["key"], value_set=latest["key"].combine_chunks())
    seen = pc.take(latest["last_run"].combine_chunks(), at)
    return planned.filter(pc.fill_null(pc.less(seen, planned["run_id"]), True))


# Arrow 26 aborts the process on a group-by of an empty table by a dictionary column: the
# group-bys here are not run on empty tables.


def _counts(table: pa.Table, column: str) -> dict[str, int]:
    if table.num_rows == 0:
        return {}
    grouped = table.group_by(column).aggregate([([], "count_all")])
    return dict(zip(grouped[column].to_pylist(), grouped["count_all"].to_pylist()))


def _runs(table: pa.Table) -> list[RunSummary]:
    if table.num_rows == 0:
        return []
    by_status = table.group_by(["run_id", "status"]).aggregate([([], "count_all")]).to_pylist()
    facts = table.group_by("run_id").aggregate([("processed_at", "min"), ("model_id", "distinct")]).to_pylist()
    counts: dict[str, dict[str, int]] = {}
    for row in by_status:
        counts.setdefault(row["run_id"], {})[row["status"]] = row["count_all"]
    runs = [RunSummary(f["run_id"], counts[f["run_id"]], f["processed_at_min"].isoformat(), sorted(m for m in f["model_id_distinct"] if m is not None)) for f in facts]
    runs.sort(key=lambda r: r.started, reverse=True)
    return runs


def _reasons(dest: str, settled: pa.Table) -> list[dict[str, Any]]:
    """The failed and skipped sources among `settled` (latest rows) with their latest row's
    reason and failure columns, read for those sources only."""
    listed = settled.filter(pc.is_in(pc.cast(settled["status"], pa.string()), value_set=pa.array(["failed", "skipped"])))
    if listed.num_rows == 0:
        return []
    wanted = {(k, r): s for k, r, s in zip(listed["key"].to_pylist(), listed["run_id"].to_pylist(), listed["status"].to_pylist())}
    keys = pa.array(sorted({k for k, _ in wanted}), pa.string())
    rows = scan_history(dest, REASON_COLUMNS, lambda b: b.filter(pc.is_in(b.column("key"), value_set=keys))).to_pylist()
    found = {(r["key"], r["run_id"]): r | {"status": wanted[(r["key"], r["run_id"])]} for r in rows if (r["key"], r["run_id"]) in wanted}
    return list(found.values())


def summarize(dest: str) -> HistorySummary:
    """Summarize every row under `dest` (the latest row of each source decides its state; a
    source planned since then and not done yet is `pending`)."""
    scan = scan_history_files(dest, SUMMARY_COLUMNS, _encoded)
    table = scan.table.unify_dictionaries()
    if scan.compacted_files > 1:
        table = _distinct_rows(table)  # only then can a row come twice
    latest = latest_rows(table)
    pending = planned_not_done(dest, latest)
    settled = latest.filter(pc.invert(pc.is_in(latest["key"], value_set=pending["key"].combine_chunks())))
    states = _counts(settled, "status")
    if pending.num_rows:
        states["pending"] = pending.num_rows
    listed = _reasons(dest, settled)
    never_done = pc.sum(pc.invert(pc.is_in(pending["key"], value_set=latest["key"].combine_chunks()))).as_py() or 0  # planned, no row yet
    return HistorySummary(
        sources=latest.num_rows + never_done,
        latest=states,
        ok_by_model=_counts(settled.filter(pc.equal(settled["status"], "ok")), "model_id"),
        runs=_runs(table),
        failing=sorted((r["key"], r["error"]) for r in listed if r["status"] == "failed"),
        known_failures=sorted((r["key"], r["error"]) for r in listed if is_known_failure(r)),
        pending=sorted(zip(pending["key"].to_pylist(), pending["run_id"].to_pylist())),
        skipped_as_colour=sorted((r["key"], r["error"]) for r in listed if r["status"] == "skipped"),
    )
