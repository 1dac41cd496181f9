"""What a colorization run has to do, decided in Arrow: the listing less what is done.

A source is done when an `ok` row of this model holds its (key, etag); it is left alone when
its latest row is a known failure (failures.py) of the same etag. An archive of ten million
photos is ten million listing rows and as many history rows, so nothing here makes a Python
object per photo: the listing and the history are Arrow columns, and "not done yet" is a set
lookup in Arrow's C++ (`index_in` of each listed key among the done keys, then one comparison
of etags). Against Acero's hash join (`Table.join(..., "left anti")`), timed once beside it at
3M rows on the 2-core development machine (2026-12-02): the lookup took 1.3 s and 0.2 GB more
memory, the join 1.9 s and 1.0 GB; at 10M the whole nightly plan takes ~9 s (BENCHMARKS.md,
bench/bench_scale.py). Python objects are made only for the sources that are candidates and
ever failed: tonight's work, not the archive's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from colorize_core.archive.failures import current_judge, is_known_failure
from colorize_core.archive.history import latest_rows, scan_history

DONE_COLUMNS = ("key", "source_etag", "model_id", "status")
FAILURE_COLUMNS = ("key", "source_etag", "status", "permanent", "judged_by", "error", "run_id", "processed_at")


@dataclass(frozen=True)
class DoneHistory:
    """What planning needs of a destination's history, read in one pass over its files."""

    keys: pa.Array  # of every ok row of this model (a key may repeat, with other etags)
    etags: pa.Array  # parallel to keys
    failed: pa.Array  # distinct keys that have at least one failed row (any model)


def read_done(dest: str, model_id: str) -> DoneHistory:
    """The (key, etag) of every ok row of `model_id` under `dest`, and the keys that ever
    failed, keeping only those columns of only those rows, batch by batch."""
    failed_parts: list[pa.Array] = []

    def keep(batch: pa.RecordBatch) -> pa.RecordBatch:
        status = batch.column("status")
        failed = batch.filter(pc.equal(status, "failed")).column("key")
        if len(failed):
            failed_parts.append(failed)
        ok = pc.and_(pc.equal(status, "ok"), pc.equal(batch.column("model_id"), model_id))
        return batch.filter(pc.fill_null(ok, False))

    table = scan_history(dest, DONE_COLUMNS, keep)
    failed = pc.unique(pa.chunked_array(failed_parts, pa.string())) if failed_parts else pa.array([], pa.string())
    # One array each (Arrow's lookups and takes are several times faster on one array than on
    # hundreds of chunks), made one column at a time and the chunks let go at once: the copy
    # never coexists with the other column's chunks (at 10M rows, 0.4 GB less at the peak).
    columns = [table["key"], table["source_etag"]]
    del table
    keys = _one_array(columns.pop(0))
    etags = _one_array(columns.pop(0))
    return DoneHistory(keys, etags, _one_array(failed))


def _one_array(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        return column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    return column


def not_done(listing: pa.Table, done: DoneHistory) -> pa.Table:
    """The listing's rows whose (key, etag) has no ok row, in listing order: an anti-join on
    (key, etag), as a set lookup (the module's docstring says why)."""
    if listing.num_rows == 0 or len(done.keys) == 0:
        return listing
    at = pc.index_in(listing["key"], value_set=done.keys)  # the first done row of each key
    same = pc.fill_null(pc.equal(pc.take(done.etags, at), listing["etag"]), False)
    found = pc.is_valid(at)
    # A key done under several etags (a file replaced and colorized again) may match another
    # of its rows than the first: those few rows are checked against all of the key's rows.
    doubtful = pc.and_(found, pc.invert(same))
    if pc.any(doubtful).as_py():
        rows = listing.filter(doubtful)
        of_them = pc.is_in(done.keys, value_set=rows["key"])
        pairs = set(zip(done.keys.filter(of_them).to_pylist(), done.etags.filter(of_them).to_pylist()))
        again = [(k, e) in pairs for k, e in zip(rows["key"].to_pylist(), rows["etag"].to_pylist())]
        same = _set_where(same, doubtful, again)
    return listing.filter(pc.invert(same))


def _set_where(mask: pa.Array | pa.ChunkedArray, where: pa.Array | pa.ChunkedArray, values: list[bool]) -> pa.Array:
    """`mask` with its entries at the true positions of `where` replaced by `values`, in order."""
    out = np.asarray(_one_array(mask).to_numpy(zero_copy_only=False), dtype=bool).copy()
    out[np.flatnonzero(_one_array(where).to_numpy(zero_copy_only=False))] = values
    return pa.array(out)


def known_failures_among(dest: str, candidates: pa.Table, failed: pa.Array) -> dict[str, tuple[str, str]]:
    """key -> (etag, reason) of each candidate whose latest row is a known failure: only the
    rows of candidates that ever failed (`failed`) are read into Python."""
    if len(failed) == 0 or candidates.num_rows == 0:
        return {}
    suspects = pc.filter(failed, pc.is_in(failed, value_set=_one_array(candidates["key"])))
    if len(suspects) == 0:
        return {}
    rows = scan_history(dest, FAILURE_COLUMNS, lambda b: b.filter(pc.is_in(b.column("key"), value_set=suspects)))
    judged_by = current_judge()
    return {row["key"]: (row["source_etag"], row["error"]) for row in latest_rows(rows).to_pylist() if is_known_failure(row, judged_by)}


def drop_known_failures(candidates: pa.Table, known: dict[str, tuple[str, str]]) -> pa.Table:
    """The candidates less the known failures whose etag is still the one that failed."""
    if not known:
        return candidates
    keys = pa.array(list(known), pa.string())
    etags = pa.array([etag for etag, _ in known.values()], pa.string())
    at = pc.index_in(candidates["key"], value_set=keys)
    same = pc.fill_null(pc.equal(pc.take(etags, at), candidates["etag"]), False)
    return candidates.filter(pc.invert(same))


@dataclass(frozen=True)
class Planned:
    todo: pa.Table  # the listing's rows still to do, in listing order
    already_done: int
    known_failed: int  # listed sources left alone: known failures with the same etag


def plan_listing(listing: pa.Table, dest: str, model_id: str, *, retry_failed: bool = False) -> Planned:
    """The listing's rows that have no ok row of `model_id` under `dest`, less the known
    failures whose etag has not changed (unless `retry_failed`)."""
    done = read_done(dest, model_id)
    candidates = not_done(listing, done)
    known = {} if retry_failed else known_failures_among(dest, candidates, done.failed)
    todo = drop_known_failures(candidates, known)
    return Planned(todo, listing.num_rows - candidates.num_rows, candidates.num_rows - todo.num_rows)
