"""An archive of N photos: what planning and `colorize status` cost as N grows (listing I/O
apart: bench/bench_listing.py measures listing).

For each N, synthetic columns as an archive's are (`coll NN/box NNNN/photo_NNNNNNN.tif`, 32-hex
etags): a history of N ok rows in one compacted metadata file (a year of nightly runs after
compaction), and
- `nightly`: the listing is the N done photos plus 10 new ones; planning must find the 10;
- `first_run`: the listing is N new photos and the history is empty;
(both write the plan, one row group per shard, as a run does);
- `status`: `summarize` (what `colorize status` prints) over the N-row history.
Each is timed in a process of its own that first reads the listing (so the listing is in the
baseline RSS, as it is when planning starts) and samples its RSS every 5 ms while it runs:
`rss_above_gb` is the peak above the RSS before the step. `python_baseline` (N <= 1M): the same
nightly plan with a Python set of (key, etag) tuples, the way planning worked before, in the same
run, for the ratio.

Run: `.venv/bin/python -m bench.bench_scale [--sizes 100000,1000000,3000000,10000000] [--steps nightly,status]
[--cli-files 1000000]` (`cli_nightly`: `colorize archive` itself over a folder of that many done
photos and 10 new, wall seconds and peak RSS).
JSON lines.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bench.common import machine
from colorize_core.archive.config import DEFAULT_SHARD_SIZE
from colorize_core.archive.layout import compacted_key
from colorize_core.archive.listing import LISTING_SCHEMA, with_shards, write_plan
from colorize_core.storage.records import OUTPUT_SCHEMA, table_to_bytes

MODEL = "residual_encoder-0123abcd"
NEW = 10


def _keys(start: int, stop: int) -> pa.Array:
    i = np.arange(start, stop)
    coll, box = pa.array(i // 200_000).cast(pa.string()), pa.array(i // 1000).cast(pa.string())
    return pc.binary_join_element_wise("coll ", pc.utf8_lpad(coll, 2, "0"), "/box ", pc.utf8_lpad(box, 4, "0"), "/photo_", pc.utf8_lpad(pa.array(i).cast(pa.string()), 7, "0"), ".tif", "")


def _etags(start: int, stop: int) -> pa.Array:
    i = pa.array(np.arange(start, stop) * 2654435761 % (1 << 40)).cast(pa.string())
    return pc.binary_join_element_wise(pc.utf8_lpad(i, 16, "0"), "5d41402abc4b2a76", "")


def _listing(n: int) -> pa.Table:
    return pa.table({"key": _keys(0, n), "size": pa.array(np.full(n, 4_000_000, dtype=np.int64)), "etag": _etags(0, n), "problem": pa.nulls(n, pa.string())}, schema=LISTING_SCHEMA)


def _history(n: int, now: datetime) -> pa.Table:
    run_ids = pa.array([f"2026{m:02d}01T020000-0000abcd" for m in range(1, 13)])
    run = pa.array(np.arange(n) * 12 // max(n, 1)).cast(pa.int32())
    processed = pa.array((np.datetime64("2026-01-01", "ms") + (np.arange(n) * 12 // max(n, 1)).astype("timedelta64[D]") * 30))
    cols: dict[str, Any] = {name: pa.nulls(n, OUTPUT_SCHEMA.field(name).type) for name in OUTPUT_SCHEMA.names}
    cols |= {
        "key": _keys(0, n), "source_etag": _etags(0, n), "output_key": _keys(0, n), "model_id": pa.repeat(MODEL, n).cast(pa.string()), "status": pa.repeat("ok", n).cast(pa.string()),
        "width": pa.array(np.full(n, 3000, dtype=np.int32)), "height": pa.array(np.full(n, 2000, dtype=np.int32)),
        "infer_s": pa.array(np.full(n, 0.01, dtype=np.float32)), "run_id": pc.take(run_ids, run), "processed_at": processed.cast(pa.timestamp("ms", tz="UTC")),
    }
    return pa.table(cols, schema=OUTPUT_SCHEMA)


def make(root: Path, n: int) -> None:
    """The listings and the histories the steps read: `root/nightly.parquet`, `root/first.parquet`
    (listings), `root/dest` (N rows of history) and `root/empty` (none)."""
    pq.write_table(pa.concat_tables([_listing(n), pa.table({"key": _keys(n, n + NEW), "size": pa.array(np.full(NEW, 1, dtype=np.int64)), "etag": _etags(n, n + NEW), "problem": pa.nulls(NEW, pa.string())}, schema=LISTING_SCHEMA)]), root / "nightly.parquet")
    pq.write_table(_listing(n), root / "first.parquet")
    meta = root / "dest" / "_colorize" / "metadata"
    meta.mkdir(parents=True)
    (root / "empty").mkdir()
    key = compacted_key(datetime(2027, 1, 1, tzinfo=timezone.utc)).rsplit("/", 1)[-1]
    (meta / key).write_bytes(table_to_bytes(_history(n, datetime.now(timezone.utc)), metadata={"absorbed": []}))


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def _measured(step: Callable[[], Any]) -> tuple[Any, float, float, float]:
    """step()'s result, seconds, and the peaks above the values before it of the process's RSS
    and of the bytes Arrow holds (sampled every 5 ms; RSS also counts what the allocator has
    freed but kept), in GB."""
    base, arrow_base = _rss(), pa.total_allocated_bytes()
    peak, arrow_peak, done = [0], [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            arrow_peak[0] = max(arrow_peak[0], pa.total_allocated_bytes())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    try:
        result = step()
    finally:
        seconds = time.perf_counter() - start
        done.set()
        sampler.join()
    return result, seconds, (max(peak[0], _rss()) - base) / 1e9, (arrow_peak[0] - arrow_base) / 1e9


def _python_plan(listing: pa.Table, dest: str) -> int:
    """The plan as it was made before planning.py: the history's ok rows as a set of tuples, the
    listing as Python objects."""
    from colorize_core.archive.history import read_output_rows

    done = {(r["key"], r["source_etag"]) for r in read_output_rows(dest, ["key", "source_etag", "model_id", "status"]) if r["status"] == "ok" and r["model_id"] == MODEL}
    cols = listing.to_pydict()
    return sum((k, e) not in done for k, e in zip(cols["key"], cols["etag"]))


# Planning as a nightly run that skips colour photos calls it: rows skipped as colour by this
# decision count as done (a string like monochrome.decision_id()'s, without importing torch here).
COLOUR_DECISION = "bw-net 0123456789ab; inputs v1; gray < 0.004; prints from +1.522"


def child(root: Path, step: str) -> dict[str, Any]:
    from colorize_core.archive.planning import plan_listing
    from colorize_core.archive.summary import summarize

    if step == "status":
        summary, seconds, gb, arrow_gb = _measured(lambda: summarize(str(root / "dest")))
        return {"seconds": round(seconds, 2), "rss_above_gb": round(gb, 3), "arrow_above_gb": round(arrow_gb, 3), "sources": summary.sources}
    listing = pq.read_table(root / ("first.parquet" if step == "first_run" else "nightly.parquet"))
    dest = str(root / ("empty" if step == "first_run" else "dest"))
    if step == "python_baseline":
        todo, seconds, gb, arrow_gb = _measured(lambda: _python_plan(listing, dest))
        return {"seconds": round(seconds, 2), "rss_above_gb": round(gb, 3), "arrow_above_gb": round(arrow_gb, 3), "todo": todo}

    def plan_and_write() -> int:
        planned = plan_listing(listing, dest, MODEL, colour_decision=COLOUR_DECISION)
        write_plan(with_shards(planned.todo, DEFAULT_SHARD_SIZE), "s3://archive", DEFAULT_SHARD_SIZE, str(root / "plan.parquet"))
        return planned.todo.num_rows

    todo, seconds, gb, arrow_gb = _measured(plan_and_write)
    return {"seconds": round(seconds, 2), "rss_above_gb": round(gb, 3), "arrow_above_gb": round(arrow_gb, 3), "todo": todo}


def cli_nightly(files: int) -> dict[str, Any]:
    """Through the command line, as a nightly job runs it: a local folder of `files` photos all
    done (empty files: only their names and stats are read; a 1M-row compacted history whose
    etags are theirs), plus 10 new real ones; `colorize archive` with an untrained tiny model,
    wall seconds and the process's peak RSS (GNU time's %M), on two nights: the first converts the
    model for the CPU once (cached), the second is a night like the others."""
    import os

    import torch

    from bench.common import smooth_photo
    from colorize_core.model.checkpoint import read_model_id, save_checkpoint
    from colorize_core.model.config import ModelConfig
    from colorize_core.model.models import build_model
    from colorize_core.storage.local import LocalStore

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        src, dest = root / "src", root / "dest"
        start = time.perf_counter()
        for box in range(0, files, 1000):
            folder = src / f"box {box // 1000:05d}"
            folder.mkdir(parents=True)
            for i in range(box, min(box + 1000, files)):
                (folder / f"photo_{i:07d}.tif").touch()
        listing = list(LocalStore(str(src)).list())
        n = len(listing)
        history = _history(n, datetime.now(timezone.utc))
        history = history.set_column(0, "key", pa.array([o.key for o in listing])).set_column(1, "source_etag", pa.array([o.etag for o in listing]))
        history = history.set_column(2, "output_key", history["key"])
        meta = dest / "_colorize" / "metadata"
        meta.mkdir(parents=True)
        torch.manual_seed(0)
        ckpt = root / "tiny.safetensors"
        save_checkpoint(ckpt, build_model(ModelConfig(image_size=32), backbone_weights="none"), meta={"note": "bench"})
        model_id = read_model_id(ckpt)
        history = history.set_column(3, "model_id", pa.repeat(model_id, n).cast(pa.string()))
        (meta / compacted_key(datetime(2027, 1, 1, tzinfo=timezone.utc)).rsplit("/", 1)[-1]).write_bytes(table_to_bytes(history, metadata={"absorbed": []}))
        del listing, history
        setup = time.perf_counter() - start
        env = dict(os.environ, COLORIZE_HOME=str(root / "home"))
        runs = []
        for night in range(2):  # the first converts the model for this CPU once (cached): the second is a night's
            rng = np.random.default_rng(night)
            (src / f"new-{night}").mkdir()
            for i in range(NEW):
                smooth_photo(rng, 96, 64).save(src / f"new-{night}" / f"photo_{i}.png")
            command = [sys.executable, "-m", "flows.cli", "archive", str(src), "--dest", str(dest), "--checkpoint", str(ckpt), "--allow-untrained", "--device", "cpu"]
            start = time.perf_counter()
            out = subprocess.run(["/usr/bin/time", "-f", "%M", *command], capture_output=True, text=True, env=env)
            seconds = time.perf_counter() - start
            peak_kb = int(out.stderr.strip().splitlines()[-1])  # GNU time's %M: the command's peak RSS
            said = (out.stdout.strip().splitlines() or [""])[-1]
            runs.append({"exit": out.returncode, "seconds": round(seconds, 1), "peak_rss_gb": round(peak_kb * 1024 / 1e9, 3), "said": said})
        return {"bench": "scale", "step": "cli_nightly", "n": files, "first_night": runs[0], "next_night": runs[1], "setup_s": round(setup, 1), "machine": machine()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100000,1000000,3000000,10000000")
    parser.add_argument("--steps", default="nightly,first_run,status,python_baseline", help="which of them to time")
    parser.add_argument("--cli-files", type=int, default=0, help="also time `colorize archive` over a folder of this many done photos + 10 new")
    parser.add_argument("--child", nargs=2, metavar=("ROOT", "STEP"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(Path(args.child[0]), args.child[1])))
        return
    if args.cli_files:
        print(json.dumps(cli_nightly(args.cli_files)), flush=True)
    for n in (int(s) for s in args.sizes.split(",") if s):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            make(Path(tmp), n)
            made = time.perf_counter() - start
            for step in args.steps.split(","):
                if step == "python_baseline" and n > 1_000_000:
                    continue  # minutes and gigabytes: the ratio is clear at 1M
                out = subprocess.run([sys.executable, "-m", "bench.bench_scale", "--child", tmp, step], capture_output=True, text=True, timeout=1800)
                if out.returncode != 0:
                    result: dict[str, Any] = {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
                else:
                    result = json.loads(out.stdout.strip().splitlines()[-1])
                print(json.dumps({"bench": "scale", "step": step, "n": n, **result, "setup_s": round(made, 1), "machine": machine()}), flush=True)


if __name__ == "__main__":
    main()
