"""Planning's read of the metadata history: N small per-shard files vs the same rows compacted;
and what one shard task reads of a big first run's plan: the whole plan vs its own row group.

A year of nightly runs: `--runs` runs of `--shards` shard files of `--rows` rows each, in a local
folder; times `read_output_rows` (what planning calls) before and after `compact_history`, and
reports the object reads each needs (on S3 each is a GET: ~10-30 ms of latency apiece).

Run: `.venv/bin/python -m bench.bench_history [--runs 365 --shards 4 --rows 50 --plan-rows 1000000]`.
JSON lines.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from bench.common import machine
from colorize_core.archive.config import DEFAULT_SHARD_SIZE
from colorize_core.archive.history import compact_history, read_output_rows
from colorize_core.archive.layout import META_PREFIX, RUN_TIME_FORMAT, metadata_key
from colorize_core.archive.listing import ListedObject, Manifest, read_manifest, read_manifest_shard, write_manifest
from colorize_core.storage.local import LocalStore
from colorize_core.storage.records import OUTPUT_SCHEMA, rows_to_table, table_to_bytes
from colorize_core.storage.stores import open_store


def make_history(uri: str, runs: int, shards: int, rows: int, now: datetime) -> None:
    store = open_store(uri)
    for r in range(runs):
        run_id = (now - timedelta(days=runs - r + 2)).strftime(RUN_TIME_FORMAT) + f"-{r:08x}"
        for s in range(shards):
            batch = [
                {name: None for name in OUTPUT_SCHEMA.names}
                | {"key": f"box {r}/{s}/photo_{i:04d}.jpg", "source_etag": f"{r}{s}{i:x}", "output_key": f"box {r}/{s}/photo_{i:04d}.jpg",
                   "model_id": "residual_encoder-0123abcd", "status": "ok", "error": "", "width": 500, "height": 375,
                   "read_s": 0.01, "decode_s": 0.01, "infer_s": 0.1, "encode_s": 0.02, "colourfulness": 30.0,
                   "run_id": run_id, "processed_at": now}
                for i in range(rows)
            ]
            store.write(metadata_key(run_id, s), table_to_bytes(rows_to_table(batch, OUTPUT_SCHEMA)))


def timed_read(uri: str, repeats: int = 3) -> tuple[float, int]:
    best, n = float("inf"), 0
    for _ in range(repeats):
        start = time.perf_counter()
        n = len(read_output_rows(uri, columns=["key", "source_etag", "model_id", "status"]))
        best = min(best, time.perf_counter() - start)
    return best, n


def plan_reads(tmp: str, rows: int) -> dict[str, object]:
    """One shard task's read of a first run's plan: the whole manifest (the first version) vs its
    own row group through ranged reads (`read_manifest_shard`)."""
    objects = [ListedObject(f"scans/box {i // 1000:04d}/photo_{i:07d}.tif", 4_000_000 + i, f"{i:032x}") for i in range(rows)]
    plan = f"{tmp}/plan.parquet"
    write_manifest(Manifest("s3://archive", DEFAULT_SHARD_SIZE, objects), plan)
    start = time.perf_counter()
    assert read_manifest(plan).shard(7) == objects[7 * DEFAULT_SHARD_SIZE : 8 * DEFAULT_SHARD_SIZE]
    whole = time.perf_counter() - start
    fetched: list[int] = []
    ranged = LocalStore.read_range

    def counting(store: LocalStore, key: str, start: int, length: int) -> bytes:
        data = ranged(store, key, start, length)
        fetched.append(len(data))
        return data

    LocalStore.read_range = counting  # type: ignore[method-assign]  # what S3 would transfer
    try:
        start = time.perf_counter()
        _, items = read_manifest_shard(plan, 7)
        own = time.perf_counter() - start
    finally:
        LocalStore.read_range = ranged  # type: ignore[method-assign]
    assert items == objects[7 * DEFAULT_SHARD_SIZE : 8 * DEFAULT_SHARD_SIZE]
    return {
        "bench": "shard_plan_read", "plan_rows": rows, "shard_rows": DEFAULT_SHARD_SIZE, "plan_bytes": Path(plan).stat().st_size,
        "whole_plan_read_s": round(whole, 3), "own_shard_read_s": round(own, 4), "ratio": round(whole / own, 1),
        "own_shard_bytes_read": sum(fetched), "own_shard_reads": len(fetched),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=365)
    p.add_argument("--shards", type=int, default=4)
    p.add_argument("--rows", type=int, default=50)
    p.add_argument("--plan-rows", type=int, default=1_000_000)
    args = p.parse_args()
    now = datetime.now(timezone.utc)
    with tempfile.TemporaryDirectory() as tmp:
        make_history(tmp, args.runs, args.shards, args.rows, now)
        files_before = sum(1 for _ in open_store(tmp).list(META_PREFIX))
        before, rows = timed_read(tmp)
        start = time.perf_counter()
        result = compact_history(tmp, now=now)
        compact_s = time.perf_counter() - start
        files_after = sum(1 for _ in open_store(tmp).list(META_PREFIX))
        after, rows_after = timed_read(tmp)
        plans = plan_reads(tmp, args.plan_rows)
    assert rows == rows_after == args.runs * args.shards * args.rows
    print(json.dumps({
        "bench": "history_read", "rows": rows, "files_before": files_before, "files_after": files_after,
        "read_s_before": round(before, 3), "read_s_after": round(after, 3), "ratio": round(before / after, 1),
        "compact_s": round(compact_s, 2), "folded": result.files, "machine": machine(), "store": "local folder",
    }), flush=True)
    print(json.dumps({**plans, "machine": machine(), "store": "local folder"}), flush=True)


if __name__ == "__main__":
    main()
