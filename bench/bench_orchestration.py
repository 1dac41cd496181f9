"""What a shard costs the run beyond its photos: Prefect's task run (submitted, scheduled,
reported to the server) and the shard's own fixed work (reading its rows of the plan, the lease
renewals, committing its metadata file). Measured through the command line as a user runs it
(`colorize archive`, local Prefect): the same P tiny photos colorized as one shard and as P
one-photo shards, in the same run, on a warm model cache; per task = (P shards - 1 shard) / (P -
1). Then the share of the device's time it is at each default shard size and the CUDA goal of
2,000 photos/s (`CUDA_SHARD_SIZE` photos a task: 5 s of GPU work), and at 500 a shard (the CPU
default; there, at the CPU's own rate, see BENCHMARKS.md).

Run: `.venv/bin/python -m bench.bench_orchestration [--photos 300] [--repeats 2]`. JSON lines.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


from bench.common import machine, photo_folder, untrained_checkpoint
from colorize_core.archive.config import CUDA_SHARD_SIZE, DEFAULT_SHARD_SIZE

GOAL_PHOTOS_PER_S = 2000  # the CUDA goal (README)


def bench(photos: int, repeats: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        src = photo_folder(root / "src", photos, 64, 48, suffix=".png")
        ckpt = untrained_checkpoint(root / "tiny.safetensors", image_size=32)
        env = dict(os.environ, COLORIZE_HOME=str(root / "home"))
        cli = [sys.executable, "-m", "flows.cli"]
        options = ["--checkpoint", str(ckpt), "--allow-untrained", "--device", "cpu"]
        # A first run converts the model for this CPU and caches it: not a shard's cost.
        subprocess.run([*cli, "archive", str(src), "--dest", str(root / "warm"), *options], capture_output=True, env=env, check=True)
        one, many = [], []
        for r in range(repeats):  # interleaved, so that the machine's other work falls on both
            one.append(_run(cli, options, src, root / f"one-{r}", photos, env))
            many.append(_run(cli, options, src, root / f"many-{r}", 1, env))
        per_task = (min(many) - min(one)) / (photos - 1)
        return {
            "bench": "orchestration", "photos": photos, "one_shard_s": round(min(one), 2), "one_shard_runs_s": [round(s, 2) for s in one],
            f"{photos}_shards_s": round(min(many), 2), "many_shards_runs_s": [round(s, 2) for s in many], "per_task_ms": round(per_task * 1000, 1),
            "cuda_shard_size": CUDA_SHARD_SIZE, "share_at_cuda_goal": round(per_task / (CUDA_SHARD_SIZE / GOAL_PHOTOS_PER_S), 4),
            "share_at_500_a_shard_cuda_goal": round(per_task / (DEFAULT_SHARD_SIZE / GOAL_PHOTOS_PER_S), 4), "per_photo_ms_at_cpu_shard": round(per_task * 1000 / DEFAULT_SHARD_SIZE, 3),
            "machine": machine(), "date": time.strftime("%Y-%m-%d"),
        }  # fmt: skip


def _run(cli: list[str], options: list[str], src: Path, dest: Path, shard_size: int, env: dict[str, str]) -> float:
    start = time.perf_counter()
    out = subprocess.run([*cli, "archive", str(src), "--dest", str(dest), "--shard-size", str(shard_size), *options], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"colorize archive failed ({out.returncode}): {(out.stdout + out.stderr).strip().splitlines()[-3:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=300, help="photos, and the shards of the many-shard run")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each, the best kept")
    args = parser.parse_args()
    print(json.dumps(bench(args.photos, args.repeats)), flush=True)


if __name__ == "__main__":
    main()
