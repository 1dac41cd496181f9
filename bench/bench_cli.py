"""How fast the command line answers: `colorize --help` and `colorize status --help` as a user
runs them (a fresh process each time), beside a bare Python start and beside importing what
the command line imported before it loaded the library lazily (torch, torchvision, Prefect and
the library's flows): the "before" of BENCHMARKS.md, measured in the same run.

Run: `.venv/bin/python -m bench.bench_cli [--repeat 7]`. JSON lines; median wall seconds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.common import machine

# What `flows.cli` imported at the top before it imported lazily (the "before").
EAGER_IMPORTS = "import flows.colorize_archive, flows.train_model, flows.demo, colorize_core.evaluate, colorize_core.local_files"


def _wall(cmd: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    exe = Path(sys.executable).with_name("colorize")
    colorize = [str(exe)] if exe.exists() else [sys.executable, "-m", "flows.cli"]
    cases = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "import what the CLI imported before (torch, Prefect, library)": [sys.executable, "-c", EAGER_IMPORTS],
        "colorize --help": [*colorize, "--help"],
        "colorize status --help": [*colorize, "status", "--help"],
        "colorize archive --help": [*colorize, "archive", "--help"],
    }
    _wall(cases["import what the CLI imported before (torch, Prefect, library)"], 1)  # warm the page cache
    results = {name: _wall(cmd, args.repeat) for name, cmd in cases.items()}
    before = results["import what the CLI imported before (torch, Prefect, library)"]
    for name, seconds in results.items():
        print(json.dumps({"bench": "cli", "case": name, "median_s": round(seconds, 3), "ratio_to_before": round(seconds / before, 3), "repeat": args.repeat, "machine": machine()}))


if __name__ == "__main__":
    main()
