"""The data a GPU machine trains and scores on, small enough to travel with the working tree
(the device tool carries 64 MiB): photos-train as Parquet training shards at 256 px (the
dataset `train` streams), and the first N photos-val photos as they are (scored at their own
resolution). Both from ../shared/data; the folder is git-ignored.

Run: `.venv/bin/python -m bench.quality_data [--out .quality-data --val 120]`, then carry
`.quality-data` to the GPU and run `bash bench/gpu_quality.sh OUTDIR` there.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from bench.common import SHARED
from colorize_core.data.build import build_dataset
from colorize_core.data.dataset import list_image_files

CARRY_LIMIT = 64 * 2**20


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", default=str(SHARED / "photos-train"))
    parser.add_argument("--val", default=str(SHARED / "photos-val"))
    parser.add_argument("--val-count", type=int, default=120)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--out", default=".quality-data")
    args = parser.parse_args()
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    summary = build_dataset(args.train, str(out / "train"), size=args.size, shard_size=250)
    val = out / "val"
    val.mkdir(parents=True)
    for path in list_image_files(args.val)[: args.val_count]:
        shutil.copyfile(path, val / f"{path.parent.name}-{path.name}")
    sizes = {"train_bytes": _size(out / "train"), "val_bytes": _size(val)}
    total = sum(sizes.values())
    print(json.dumps({"bench": "quality_data", "rows": summary.rows, "skipped": summary.skipped, "failed": summary.failed, **sizes, "total_bytes": total}))
    if total > CARRY_LIMIT - 4 * 2**20:  # the working tree itself travels too
        raise SystemExit(f"{out} is {total / 2**20:.1f} MiB: too much to carry; lower --val-count or --size")


if __name__ == "__main__":
    main()
