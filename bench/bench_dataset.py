"""Dataset-building throughput: the naive path (full decode, then resize) against the project's
path (JPEG decoded at reduced size with Pillow's draft, then resize), in the same run.

Run: `.venv/bin/python -m bench.bench_dataset [--data ../shared/data]`. Prints JSON lines.
Inputs: "large scans", made by the script from ../shared/data/bw-historical (those files are
under 1.2 MP, so each is upscaled to >= 3 MP and saved as a JPEG, as a scanner would deliver),
and ~0.2 MP ImageNet photos from ../shared/data/photos-train. Every photo is prepared in full
(decode, colour statistics, crop and resize to 256, JPEG encode) whatever its colour, so both
paths do the same work per image. Then an end-to-end `build_dataset` on photos-train.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from PIL import Image

from bench.common import SHARED, machine
from colorize_core.data.build import build_dataset
from colorize_core.data.samples import prepare_sample


def make_large_scans(src: Path, out: Path, min_pixels: int = 3_000_000) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    made = []
    for i, f in enumerate(sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in (".jpg", ".jpeg", ".png"))):
        with Image.open(f) as img:
            w, h = img.size
            k = (min_pixels / (w * h)) ** 0.5
            big = img.convert("RGB").resize((round(w * k) + 1, round(h * k) + 1), Image.Resampling.BICUBIC)
        path = out / f"scan_{i:03d}.jpg"
        big.save(path, quality=92)
        made.append(path)
    return made


def rate(files: list[Path], size: int, fast: bool, repeat: int) -> tuple[float, float]:
    blobs = [(str(f), f.read_bytes()) for f in files]  # storage I/O out of the timing
    start = time.perf_counter()
    for _ in range(repeat):
        for name, data in blobs:
            prepare_sample(data, name, size, fast=fast, limits=None)
    seconds = time.perf_counter() - start
    return len(blobs) * repeat / seconds, seconds


def megapixels(files: list[Path]) -> float:
    total = 0
    for f in files:
        with Image.open(f) as img:
            total += img.size[0] * img.size[1]
    return total / len(files) / 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=SHARED)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--photos", type=int, default=300, help="photos-train images to time")
    args = p.parse_args()
    common = {"machine": machine(), "size": args.size}
    with tempfile.TemporaryDirectory() as tmp:
        scans = make_large_scans(args.data / "bw-historical", Path(tmp) / "scans")
        photos = sorted((args.data / "photos-train").glob("*"))[: args.photos]
        for label, files, repeat in (("large_scans", scans, 1), ("photos_0.2mp", photos, 1)):
            naive, _ = rate(files, args.size, fast=False, repeat=repeat)
            fast, _ = rate(files, args.size, fast=True, repeat=repeat)
            row = {
                "bench": "dataset_prepare",
                "inputs": label,
                "images": len(files) * repeat,
                "mean_megapixels": round(megapixels(files), 2),
                "naive_images_per_s": round(naive, 1),
                "project_images_per_s": round(fast, 1),
                "ratio": round(fast / naive, 2),
            }
            print(json.dumps({**row, **common}), flush=True)
        all_photos = sorted((args.data / "photos-train").glob("*"))
        start = time.perf_counter()
        summary = build_dataset(str(args.data / "photos-train"), str(Path(tmp) / "ds"), size=args.size, shard_size=250, workers=2)
        seconds = time.perf_counter() - start
        row = {
            "bench": "build_dataset",
            "inputs": "photos-train",
            "sources": summary.sources,
            "rows": summary.rows,
            "skipped": summary.skipped,
            "failed": summary.failed,
            "seconds": round(seconds, 2),
            "sources_per_s": round(len(all_photos) / seconds, 1),
            "workers": 2,
        }
        print(json.dumps({**row, **common}), flush=True)


if __name__ == "__main__":
    main()
