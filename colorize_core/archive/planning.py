"""What a colorization run has to do, decided in Arrow: the listing less what is done.

A source is done when an `ok` row of this model holds its (key, etag), or, while real colour
photos are skipped, a `skipped` row of the same etag judged by this very black-and-white-or-colour
decision (its `judged_by`: the network's weights and thresholds): a colour photo is read and
judged once, not every night, and judged again when the file or the decision changes. It is left
alone when its latest row is a known failure (failures.py) of the same etag. An archive of ten million
photos is ten million listing rows and as many history rows, so nothing here makes a Python
object per photo: the listing and the history are Arrow columns, and "not done yet" is a set
lookup in Arrow's C++ (`index_in` of each listed key among the done keys, then one comparison
of etags). Against Acero's hash join (`Table.join(..., "left anti")`), timed once beside it at
3M rows on the 2-core development machine (2026-12-02): the lookup took 1.3 s and 0.2 GB more
memory, the join 1.9 s and 1.0 GB. The lookup's hash table is its own copy of the done keys, so
past PART_KEYS of them it runs a range of key values at a time (`not_done`): at 10M the whole
nightly plan takes ~8 s and Arrow's allocations peak 1.26 GB above the listing (2.04 GB in one
lookup; BENCHMARKS.md, bench/bench_scale.py). Python objects are made only for the sources that
are candidates and ever failed: tonight's work, not the archive's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from colorize_core.archive.failures import current_judge, is_known_failure
from colorize_core.archive.history import latest_rows, scan_history

DONE_COLUMNS = ("key", "source_etag", "model_id", "status", "judged_by")
FAILURE_COLUMNS = ("key", "source_etag", "status", "permanent", "judged_by", "error", "run_id", "processed_at")


@dataclass(frozen=True)
class DoneHistory:
    """What planning needs of a destination's history, read in one pass over its files."""

    keys: pa.ChunkedArray | pa.Array  # of every ok row of this model, and skipped row of the decision (a key may repeat, with other etags)
    etags: pa.ChunkedArray | pa.Array  # parallel to keys, chunked alike
    failed: pa.Array  # distinct keys that have at least one failed row (any model)


def read_done(dest: str, model_id: str, colour_decision: str | None = None) -> DoneHistory:
    """The (key, etag) of every ok row of `model_id` under `dest` and, given `colour_decision`,
    of every row skipped as colour by it; and the keys that ever failed. Only those columns of
    only those rows are kept, batch by batch."""
    failed_parts: list[pa.Array] = []

    def keep(batch: pa.RecordBatch) -> pa.RecordBatch:
        status = batch.column("status")
        failed = batch.filter(pc.equal(status, "failed")).column("key")
        if len(failed):
            failed_parts.append(failed)
        ok = pc.fill_null(pc.and_(pc.equal(status, "ok"), pc.equal(batch.column("model_id"), model_id)), False)
        if colour_decision is not None:  # whatever model's run judged it: the decision is not the model's
            skipped = pc.and_(pc.equal(status, "skipped"), pc.equal(batch.column("judged_by"), colour_decision))
            ok = pc.or_(ok, pc.fill_null(skipped, False))
        return batch.filter(ok)

    table = scan_history(dest, DONE_COLUMNS, keep)
    failed = pc.unique(pa.chunked_array(failed_parts, pa.string())) if failed_parts else pa.array([], pa.string())
    return DoneHistory(table["key"], table["source_etag"], _one_array(failed))


def _one_array(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        return column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    return column


# Done keys one lookup's hash table holds at a time (see `not_done`). At 10M (4 ranges), against
# one lookup: 2.04 -> 1.26 GB Arrow peak, no slower; 1.25M a range saves little more and costs
# ~1 s more in passes over the keys (measured 2026-12-03, bench_scale's 10M nightly).
PART_KEYS = 2_500_000


def not_done(listing: pa.Table, done: DoneHistory) -> pa.Table:
    """The listing's rows whose (key, etag) has no ok row, in listing order: an anti-join on
    (key, etag), as a set lookup (the module's docstring says why). The lookup's hash table is
    its own copy of the done keys (1.3 GB at ten million), so over PART_KEYS of them the keys are
    looked up a range at a time: ranges of key values cut at sampled done keys, each listed key
    looked up only among the done keys of its own range (a key is in exactly one range)."""
    if listing.num_rows == 0 or len(done.keys) == 0:
        return listing
    parts = -(-len(done.keys) // PART_KEYS)
    if parts == 1:
        # One array each (Arrow's lookups and takes are several times faster on one array than
        # on hundreds of chunks); at most PART_KEYS rows, so the copy beside the chunks is small.
        keys = _one_array(done.keys)
        return listing.filter(pa.array(~_done_mask(listing["key"], listing["etag"], keys, _one_array(done.etags))))
    # Past PART_KEYS, the done columns stay in the chunks they were read in (one whole copy of
    # them would be the peak); each range's share is copied into one array.
    mask = np.zeros(listing.num_rows, dtype=bool)
    cuts = _cuts(done.keys, parts)
    listed_in, done_in = _ranges(listing["key"], cuts), _ranges(done.keys, cuts)
    pairs = listing.select(["key", "etag"])
    for i in range(len(cuts) + 1):
        rows = np.flatnonzero(listed_in == i)
        if len(rows) == 0:
            continue
        # A listing is in key order (S3's, a folder's): then a range is a slice, not a copy.
        contiguous = rows[-1] - rows[0] + 1 == len(rows)
        part = pairs.slice(int(rows[0]), len(rows)) if contiguous else pairs.take(pa.array(rows))
        here = pa.array(done_in == i)
        mask[rows] = _done_mask(part["key"], part["etag"], _one_array(done.keys.filter(here)), _one_array(done.etags.filter(here)))
    return listing.filter(pa.array(~mask))


def _cuts(keys: pa.Array | pa.ChunkedArray, parts: int, sample: int = 4096) -> list[str]:
    """Up to parts - 1 distinct key values cutting `keys` into ranges of about equal counts,
    from a fixed random sample of them."""
    at = np.random.default_rng(0).choice(len(keys), size=min(sample, len(keys)), replace=False)
    seen = sorted(pc.take(keys, pa.array(at)).to_pylist())
    return sorted({seen[len(seen) * i // parts] for i in range(1, parts)})


def _ranges(keys: pa.Array | pa.ChunkedArray, cuts: list[str]) -> np.ndarray:
    """Each key's range: how many of the (sorted) cuts are <= it, in byte order."""
    label = np.zeros(len(keys), dtype=np.int32)
    for cut in cuts:
        label += np.asarray(_one_array(pc.greater_equal(keys, cut)).to_numpy(zero_copy_only=False), dtype=bool)
    return label


def _done_mask(keys: pa.ChunkedArray | pa.Array, etags: pa.ChunkedArray | pa.Array, done_keys: pa.Array, done_etags: pa.Array) -> np.ndarray:
    """Whether each (keys[i], etags[i]) is among the (done_keys, done_etags) pairs."""
    if len(done_keys) == 0:
        return np.zeros(len(keys), dtype=bool)
    at = pc.index_in(keys, value_set=done_keys)  # the first done row of each key
    same = pc.fill_null(pc.equal(pc.take(done_etags, at), etags), False)
    found = pc.is_valid(at)
    # A key done under several etags (a file replaced and colorized again) may match another
    # of its rows than the first: those few rows are checked against all of the key's rows.
    doubtful = pc.and_(found, pc.invert(same))
    mask = np.asarray(_one_array(same).to_numpy(zero_copy_only=False), dtype=bool).copy()
    if pc.any(doubtful).as_py():
        where = np.flatnonzero(_one_array(doubtful).to_numpy(zero_copy_only=False))
        row_keys = pc.take(keys, pa.array(where))
        of_them = pc.is_in(done_keys, value_set=_one_array(row_keys))
        pairs = set(zip(done_keys.filter(of_them).to_pylist(), done_etags.filter(of_them).to_pylist()))
        mask[where] = [(k, e) in pairs for k, e in zip(row_keys.to_pylist(), pc.take(etags, pa.array(where)).to_pylist())]
    return mask


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
    already_done: int  # colorized by this model, or skipped as colour by this decision
    known_failed: int  # listed sources left alone: known failures with the same etag


def plan_listing(listing: pa.Table, dest: str, model_id: str, *, retry_failed: bool = False, colour_decision: str | None = None) -> Planned:
    """The listing's rows that have no ok row of `model_id` under `dest` (nor, given
    `colour_decision`, a row skipped as colour by it), less the known failures whose etag has
    not changed (unless `retry_failed`)."""
    done = read_done(dest, model_id, colour_decision)
    candidates = not_done(listing, done)
    known = {} if retry_failed else known_failures_among(dest, candidates, done.failed)
    todo = drop_known_failures(candidates, known)
    return Planned(todo, listing.num_rows - candidates.num_rows, candidates.num_rows - todo.num_rows)
