"""Planning in Arrow (colorize_core/archive/planning.py) equals a plain-Python reference of the
rule, on random listings and histories: changed etags, other models, failed and skipped rows,
known and unknown failures, problem keys, rows held by several compacted files."""

from __future__ import annotations

import tempfile
from unittest import mock
from datetime import datetime, timedelta, timezone
from typing import Any

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from colorize_core.archive import planning
from colorize_core.archive.failures import current_judge, is_known_failure
from colorize_core.archive.layout import compacted_key, metadata_key
from colorize_core.archive.listing import LISTING_SCHEMA
from colorize_core.archive.planning import plan_listing
from colorize_core.storage.records import OUTPUT_SCHEMA, rows_to_table, table_to_bytes
from colorize_core.storage.stores import open_store

KEYS = [f"box {i % 3}/photo_{i}.jpg" for i in range(10)] + ["ünïcode/ß.png", "a/b/c.tif"]
ETAGS = ["e1", "e2", "e3"]
MODELS = ["m1", "m2"]
T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
DECISION = "bw-net 0123456789ab; inputs v1; gray < 0.004; prints from +1.000"  # a skipped row's judge
RUNS = [f"202611{day:02d}T020000-0000000{day % 10}" for day in range(1, 6)]

history_row = st.fixed_dictionaries(
    {
        "key": st.sampled_from(KEYS),
        "source_etag": st.sampled_from(ETAGS),
        "model_id": st.sampled_from(MODELS),
        "status": st.sampled_from(["ok", "failed", "skipped"]),
        "permanent": st.sampled_from([True, False, None]),
        "judged_by": st.sampled_from([current_judge(), "an older tool", DECISION, "an older decision", None]),
        "error": st.sampled_from(["", "cannot identify image file", "memory"]),
        "run": st.integers(0, len(RUNS) - 1),
        "minutes": st.integers(0, 2),  # of any run: the same minute in two runs, the run id breaks the tie
    }
)
listing_row = st.tuples(st.sampled_from(ETAGS), st.sampled_from([None, "key has a '..' segment"]))


def _rows(drawn: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows, seen = [], set()
    for d in drawn:
        run_id = RUNS[d["run"]]
        if (run_id, d["key"]) in seen:
            continue  # one row per source per run
        seen.add((run_id, d["key"]))
        rows.append(
            {name: None for name in OUTPUT_SCHEMA.names}
            | {k: v for k, v in d.items() if k not in ("run", "minutes")}
            | {"run_id": run_id, "processed_at": T0 + timedelta(minutes=d["minutes"])}
        )
    return rows


def _write_history(dest: str, rows: list[dict[str, Any]], compacted_runs: set[int], twice: bool) -> None:
    """Each run's rows in its shard file; the runs in `compacted_runs` also folded into a
    compacted file (their shard files left behind, as a crash after the compaction's write
    leaves them), written `twice` as two compactions at once would."""
    store = open_store(dest)
    for i, run_id in enumerate(RUNS):
        mine = [r for r in rows if r["run_id"] == run_id]
        if mine:
            store.write(metadata_key(run_id, 0), table_to_bytes(rows_to_table(mine, OUTPUT_SCHEMA)))
    folded = [r for r in rows if RUNS.index(r["run_id"]) in compacted_runs]
    absorbed = [metadata_key(RUNS[i], 0) for i in sorted(compacted_runs)]
    for n in range(2 if twice else 1):
        if folded:
            key = compacted_key(T0 + timedelta(days=30, seconds=n))
            store.write(key, table_to_bytes(rows_to_table(folded, OUTPUT_SCHEMA), metadata={"absorbed": absorbed}))


def _reference(
    listing: list[tuple[str, str, str | None]], rows: list[dict[str, Any]], model_id: str, retry_failed: bool, colour_decision: str | None
) -> tuple[list[str], int, int]:
    done = {(r["key"], r["source_etag"]) for r in rows if r["status"] == "ok" and r["model_id"] == model_id}
    # skipped as colour by this decision (any model's run): done while colour photos are skipped
    done |= {(r["key"], r["source_etag"]) for r in rows if colour_decision and r["status"] == "skipped" and r["judged_by"] == colour_decision}
    latest: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r["key"] not in latest or (r["processed_at"], r["run_id"]) > (latest[r["key"]]["processed_at"], latest[r["key"]]["run_id"]):
            latest[r["key"]] = r
    todo, already, known = [], 0, 0
    for key, etag, _ in listing:
        if (key, etag) in done:
            already += 1
        elif not retry_failed and key in latest and is_known_failure(latest[key]) and latest[key]["source_etag"] == etag:
            known += 1
        else:
            todo.append(key)
    return todo, already, known


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    listed=st.dictionaries(st.sampled_from(KEYS), listing_row, max_size=len(KEYS)),
    drawn=st.lists(history_row, max_size=30),
    compacted_runs=st.sets(st.integers(0, len(RUNS) - 1)),
    twice=st.booleans(),
    model_id=st.sampled_from(MODELS),
    retry_failed=st.booleans(),
    part_keys=st.sampled_from([1, 2, 5, planning.PART_KEYS]),  # done keys looked up a range at a time, or all at once
    colour_decision=st.sampled_from([None, DECISION]),  # None: --colour-photos colorize
)
def test_the_arrow_plan_is_the_rule(
    listed: dict[str, tuple[str, str | None]],
    drawn: list[dict[str, Any]],
    compacted_runs: set[int],
    twice: bool,
    model_id: str,
    retry_failed: bool,
    part_keys: int,
    colour_decision: str | None,
) -> None:
    listing = sorted((key, etag, problem) for key, (etag, problem) in listed.items())
    rows = _rows(drawn)
    with tempfile.TemporaryDirectory() as dest:
        _write_history(dest, rows, compacted_runs, twice)
        table = pa.table(
            {"key": [k for k, _, _ in listing], "size": [1] * len(listing), "etag": [e for _, e, _ in listing], "problem": [p for _, _, p in listing]},
            schema=LISTING_SCHEMA,
        )
        with mock.patch.object(planning, "PART_KEYS", part_keys):
            planned = plan_listing(table, dest, model_id, retry_failed=retry_failed, colour_decision=colour_decision)
    todo, already, known = _reference(listing, rows, model_id, retry_failed, colour_decision)
    assert planned.todo["key"].to_pylist() == todo  # in listing order
    assert (planned.already_done, planned.known_failed) == (already, known)
    # The plan's rows are the listing's own: etag and problem travel with them.
    assert set(zip(*planned.todo.select(["key", "etag", "problem"]).to_pydict().values())) <= set(listing)


def test_a_key_done_under_several_etags_is_done_under_each(tmp_path: Any) -> None:
    """The set lookup finds a key's first done row; the other etags of the key are checked too."""
    dest = str(tmp_path)
    rows = _rows([{"key": "a.jpg", "source_etag": e, "model_id": "m1", "status": "ok", "permanent": None, "judged_by": None, "error": "", "run": i, "minutes": 0} for i, e in enumerate(ETAGS)])
    _write_history(dest, rows, set(), False)
    for etag in ETAGS + ["e4"]:
        table = pa.table({"key": ["a.jpg"], "size": [1], "etag": [etag], "problem": [None]}, schema=LISTING_SCHEMA)
        assert plan_listing(table, dest, "m1").todo.num_rows == (etag == "e4")
        with mock.patch.object(planning, "PART_KEYS", 1):
            assert plan_listing(table, dest, "m1").todo.num_rows == (etag == "e4")


@settings(max_examples=50, deadline=None)
@given(keys=st.lists(st.lists(st.sampled_from(list("ab/.:\\\t\x7f é😀") + ["x" * 40, "y" * 70, "z" * 130, "😀" * 40] + ["abcdefghij/", "ééééé😀/"] * 4), max_size=40).map("".join), max_size=20))
def test_listing_checks_only_the_keys_that_could_fail_and_finds_every_problem(keys: list[str], tmp_path_factory: Any) -> None:
    """`key_problems` runs the stores' exact checks only on suspect keys: its answers must be
    the exact checks' on every key, for a local folder (a file system's name limit) and for S3
    (1024 bytes with the prefix)."""
    from colorize_core.archive.listing import key_problems
    from colorize_core.storage.imageio import output_name_for
    from colorize_core.storage.s3 import S3Store

    keys = [k + ".jpg" for k in keys] + [k + ".gif" for k in keys[:3]]
    keys += ["abcdefghij/" * n + "a.jpg" for n in (17, 29, 30, 93)]  # short segments, long keys: around S3's limit with the prefix
    local = open_store(str(tmp_path_factory.getbasetemp()))
    s3 = S3Store("bucket", "p" * 700)  # a long prefix: keys of over 323 bytes are too long with it
    for store, dest in ((local, local), (s3, local), (local, s3)):
        exact = [store.check_key(k) or dest.check_key(output_name_for(k)) for k in keys]
        assert key_problems(pa.array(keys, pa.string()), store, dest).to_pylist() == exact


small_key = st.text(alphabet="ab/é", max_size=4)
pair = st.tuples(small_key, st.sampled_from(ETAGS))


@settings(max_examples=100, deadline=None)
@given(
    listed=st.dictionaries(small_key, st.sampled_from(ETAGS), min_size=2, max_size=25),
    done_pairs=st.lists(pair, min_size=2, max_size=40),
    part_keys=st.integers(1, 6),
    chunks=st.integers(1, 3),
    shuffle=st.none() | st.randoms(use_true_random=False),
)
def test_the_anti_join_by_key_ranges_is_the_set_rule(listed: dict[str, str], done_pairs: list[tuple[str, str]], part_keys: int, chunks: int, shuffle: Any) -> None:
    """`not_done` looking the done keys up a range of key values at a time (as it does past
    PART_KEYS of them) gives the set rule's answer, in listing order, keys at the cuts included;
    a listing in key order (as stores list) or not (an inventory's)."""
    keys = sorted(listed, key=lambda k: k.encode())
    if shuffle is not None:
        shuffle.shuffle(keys)
    cut = [len(keys) * i // chunks for i in range(chunks + 1)]
    schema = pa.schema([("key", pa.string()), ("etag", pa.string())])
    batches = [pa.record_batch({"key": keys[a:b], "etag": [listed[k] for k in keys[a:b]]}, schema=schema) for a, b in zip(cut, cut[1:])]
    listing = pa.Table.from_batches(batches, schema=schema)  # in chunks, as a listing is read
    done = planning.DoneHistory(pa.array([k for k, _ in done_pairs], pa.string()), pa.array([e for _, e in done_pairs], pa.string()), pa.array([], pa.string()))
    with mock.patch.object(planning, "PART_KEYS", part_keys):
        todo = planning.not_done(listing, done)
    assert todo["key"].to_pylist() == [k for k in keys if (k, listed[k]) not in set(done_pairs)]
