"""Planning's read of the metadata history: N small per-shard files vs the same rows compacted.

A year of nightly runs: `--runs` runs of `--shards` shard files of `--rows` rows each, in a local
folder; times `read_output_rows` (what planning calls) before and after `compact_history`, and
reports the object reads each needs (on S3 each is a GET: ~10-30 ms of latency apiece).

Run: `.venv/bin/python -m bench.bench_history [--runs 365 --shards 4 --rows 50]`. JSON lines.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import datetime, timedelta, timezone

from bench.bench_models import machine
from colorize_core.history import META_PREFIX, RUN_TIME_FORMAT, compact_history, metadata_key, read_output_rows
from colorize_core.records import OUTPUT_SCHEMA, rows_to_table, table_to_bytes
from colorize_core.storage import open_store


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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=365)
    p.add_argument("--shards", type=int, default=4)
    p.add_argument("--rows", type=int, default=50)
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
    assert rows == rows_after == args.runs * args.shards * args.rows
    print(json.dumps({
        "bench": "history_read", "rows": rows, "files_before": files_before, "files_after": files_after,
        "read_s_before": round(before, 3), "read_s_after": round(after, 3), "ratio": round(before / after, 1),
        "compact_s": round(compact_s, 2), "folded": result.files, "machine": machine(), "store": "local folder",
    }), flush=True)


if __name__ == "__main__":
    main()
