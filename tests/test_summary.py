"""`colorize status`'s summary in Arrow (colorize_core/archive/summary.py) equals the plain-Python
rule it replaced, on random histories and plans: latest row per source by time then run id,
pending sources of killed runs, rows held by two compactions at once."""

from __future__ import annotations

import tempfile
from collections import Counter
from typing import Any

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from colorize_core.archive.failures import is_known_failure
from colorize_core.archive.layout import plan_key
from colorize_core.archive.summary import summarize
from colorize_core.storage.records import table_to_bytes
from colorize_core.storage.stores import open_store
from tests.test_planning import KEYS, RUNS, _rows, _write_history, history_row


def _reference(rows: list[dict[str, Any]], plans: dict[int, list[str]]) -> dict[str, Any]:
    last_run: dict[str, str] = {}
    latest: dict[str, dict[str, Any]] = {}
    runs: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        last_run[r["key"]] = max(last_run.get(r["key"], r["run_id"]), r["run_id"])
        runs.setdefault(r["run_id"], []).append(r)
        if r["key"] not in latest or (r["processed_at"], r["run_id"]) >= (latest[r["key"]]["processed_at"], latest[r["key"]]["run_id"]):
            latest[r["key"]] = r
    pending: dict[str, str] = {}
    for i in sorted(plans):
        run_id = RUNS[i]
        for key in plans[i]:
            if key not in last_run or last_run[key] < run_id:
                pending[key] = run_id
            else:
                pending.pop(key, None)
    settled = [r for k, r in latest.items() if k not in pending]
    states = Counter(r["status"] for r in settled)
    if pending:
        states["pending"] = len(pending)
    return {
        "sources": len(set(latest) | set(pending)),
        "latest": dict(states),
        "ok_by_model": dict(Counter(r["model_id"] for r in settled if r["status"] == "ok")),
        "runs": sorted((run_id, dict(Counter(r["status"] for r in rs)), min(r["processed_at"] for r in rs).isoformat(), sorted({r["model_id"] for r in rs})) for run_id, rs in runs.items()),
        "failing": sorted((r["key"], r["error"]) for r in settled if r["status"] == "failed"),
        "known_failures": sorted((r["key"], r["error"]) for r in settled if is_known_failure(r)),
        "pending": sorted(pending.items()),
        "skipped_as_colour": sorted((r["key"], r["error"]) for r in settled if r["status"] == "skipped"),
    }


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    drawn=st.lists(history_row, max_size=30),
    compacted_runs=st.sets(st.integers(0, len(RUNS) - 1)),
    twice=st.booleans(),
    plans=st.dictionaries(st.integers(0, len(RUNS) - 1), st.lists(st.sampled_from(KEYS), unique=True), max_size=3),
)
def test_the_arrow_summary_is_the_rule(drawn: list[dict[str, Any]], compacted_runs: set[int], twice: bool, plans: dict[int, list[str]]) -> None:
    rows = _rows(drawn)
    with tempfile.TemporaryDirectory() as dest:
        _write_history(dest, rows, compacted_runs, twice)
        store = open_store(dest)
        for i, keys in plans.items():
            store.write(plan_key(RUNS[i]), table_to_bytes(pa.table({"key": pa.array(keys, pa.string())})))
        summary = summarize(dest)
    got = summary.to_dict()
    got["runs"] = sorted((r["run_id"], r["counts"], r["started"], r["models"]) for r in got["runs"])
    assert got == _reference(rows, plans)
    assert [r.started for r in summary.runs] == sorted((r.started for r in summary.runs), reverse=True)  # newest first
