"""The metadata history: compaction folds finished runs into one file, loses and duplicates
nothing, survives a crash half way and two compactions at once."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from colorize_core.archive.history import compact_history, read_output_rows
from colorize_core.archive.layout import META_PREFIX, RUN_TIME_FORMAT, metadata_key
from colorize_core.archive.planning import read_done
from colorize_core.storage.objects import ObjectStore
from colorize_core.storage.records import OUTPUT_SCHEMA, rows_to_table, table_to_bytes
from colorize_core.storage.stores import open_store

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)


def _write_run(store: ObjectStore, days_ago: float, shards: int, keys_per_shard: int = 3, model: str = "m1") -> str:
    run_id = (NOW - timedelta(days=days_ago)).strftime(RUN_TIME_FORMAT) + "-abcd1234"
    for shard in range(shards):
        rows = [
            {name: None for name in OUTPUT_SCHEMA.names}
            | {"key": f"{run_id}/{shard}/{i}.jpg", "source_etag": "e", "model_id": model, "status": "ok" if i else "failed",
               "error": "" if i else "corrupt", "run_id": run_id, "processed_at": NOW}
            for i in range(keys_per_shard)
        ]
        store.write(metadata_key(run_id, shard), table_to_bytes(rows_to_table(rows, OUTPUT_SCHEMA)))
    return run_id


def _files(store: ObjectStore) -> list[str]:
    return sorted(o.key for o in store.list(META_PREFIX))


def _done(uri: str, model_id: str) -> set[tuple[str, str]]:
    done = read_done(uri, model_id)
    return set(zip(done.keys.to_pylist(), done.etags.to_pylist()))


def _ident(rows: list[dict]) -> list[tuple]:
    return sorted((r["run_id"], r["key"], r["status"]) for r in rows)


def test_compaction_folds_finished_runs_and_keeps_every_row(store_uri: str) -> None:
    store = open_store(store_uri)
    old = [_write_run(store, days, shards=2) for days in (30, 20, 10, 3)]
    recent = _write_run(store, 0.5, shards=2)  # may still be running: left alone
    before = read_output_rows(store_uri)
    done_before = _done(store_uri, "m1")
    result = compact_history(store_uri, min_files=4, now=NOW)
    assert result.files == 8 and result.rows == 24 and result.key is not None
    assert _files(store) == sorted([result.key, metadata_key(recent, 0), metadata_key(recent, 1)])
    assert _ident(read_output_rows(store_uri)) == _ident(before)
    assert _done(store_uri, "m1") == done_before and len(done_before) == 20
    assert all(run in {r["run_id"] for r in read_output_rows(store_uri)} for run in old)


def test_too_few_files_are_left_as_they_are(store_uri: str) -> None:
    store = open_store(store_uri)
    _write_run(store, 10, shards=2)
    assert compact_history(store_uri, min_files=3, now=NOW).key is None
    assert len(_files(store)) == 2


def test_a_compacted_file_is_folded_again_with_newer_runs(tmp_path: Path) -> None:
    uri = str(tmp_path / "dest")
    store = open_store(uri)
    _write_run(store, 40, shards=3)
    first = compact_history(uri, min_files=3, now=NOW - timedelta(days=20))
    _write_run(store, 10, shards=2)
    second = compact_history(uri, min_files=3, now=NOW)
    assert second.files == 3 and second.rows == 15  # the first compacted file plus two shard files
    assert _files(store) == [second.key]
    assert first.key not in _files(store)
    assert len(read_output_rows(uri)) == 15


def _three_old_runs(tmp_path: Path) -> tuple[str, ObjectStore, list[tuple]]:
    uri = str(tmp_path / "dest")
    store = open_store(uri)
    for days in (9, 8, 7):
        _write_run(store, days, shards=1)
    return uri, store, _ident(read_output_rows(uri))


def test_a_crash_between_writing_and_deleting_duplicates_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    uri, store, before = _three_old_runs(tmp_path)
    store_cls = type(store)
    original = store_cls.delete
    calls = {"n": 0}

    def crash_after_one(self: ObjectStore, key: str) -> None:
        calls["n"] += 1
        if calls["n"] > 1:
            raise KeyboardInterrupt("the machine went away")
        original(self, key)

    monkeypatch.setattr(store_cls, "delete", crash_after_one)
    with pytest.raises(KeyboardInterrupt):
        compact_history(uri, min_files=3, now=NOW)
    monkeypatch.setattr(store_cls, "delete", original)
    assert len(_files(store)) == 3  # the compacted file and two absorbed files not yet deleted
    assert _ident(read_output_rows(uri)) == before
    assert _ident(read_output_rows(uri, columns=["run_id", "key", "status"])) == before
    again = compact_history(uri, min_files=2, now=NOW)  # the next compaction cleans up
    assert len(_files(store)) == 1 and _files(store) == [again.key]
    assert _ident(read_output_rows(uri)) == before


def test_two_compactions_at_once_count_each_row_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    uri, store, before = _three_old_runs(tmp_path)
    monkeypatch.setattr(type(store), "delete", lambda self, key: None)  # both "still deleting"
    compact_history(uri, min_files=3, now=NOW)
    # The second one listed before the first wrote: it folds the same three run files.
    monkeypatch.setattr("colorize_core.archive.history._files", lambda s: [k for k in sorted(o.key for o in s.list(META_PREFIX)) if "compacted" not in k])
    compact_history(uri, min_files=3, now=NOW)
    monkeypatch.undo()
    assert sum("compacted" in k for k in _files(store)) == 2
    assert _ident(read_output_rows(uri)) == before


def test_plans_of_finished_runs_are_pruned(store_uri: str) -> None:
    from colorize_core.archive.history import prune_plans
    from colorize_core.archive.layout import plan_key

    store = open_store(store_uri)
    old = [(NOW - timedelta(days=d)).strftime(RUN_TIME_FORMAT) + "-00000000" for d in (30, 3)]
    recent = (NOW - timedelta(hours=5)).strftime(RUN_TIME_FORMAT) + "-11111111"
    for run in [*old, recent, "custom-run-id"]:
        store.write(plan_key(run), b"plan")
    assert prune_plans(store_uri, now=NOW) == 2
    assert sorted(o.key for o in store.list("_colorize/plans/")) == sorted([plan_key(recent), plan_key("custom-run-id")])
