"""Training input throughput: how many samples/s the DataLoader delivers from built shards
(decode the 256 px JPEG, random crop and flip, to a tensor), in process and with N workers;
against the first version's path in the same run (every sample resampled to 1.15x the crop,
float tensors out of the workers).

What a GPU needs from it: training at 5,000 images/s wants 5,000 samples/s from the CPUs, so
this says how many `--workers` a machine must give `colorize train`.

Run: `.venv/bin/python -m bench.bench_loader [--samples 2000 --workers 2 --size 224]`. JSON lines.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np
from torch.utils.data import DataLoader

from bench.common import jpeg_bytes, machine, smooth_photo
from colorize_core.data.build import build_dataset
from colorize_core.data.dataset import CONTEXT, Item, ShardImages, StepBatchSampler, random_crop_flip, resize_short_side
from colorize_core.storage.stores import open_store


def make_colour_photos(uri: str, n: int) -> None:
    """n smooth colour photos, 500x375, as JPEGs (colourful enough to become training samples)."""
    store = open_store(uri)
    rng = np.random.default_rng(0)
    for i in range(n):
        store.write(f"photo_{i:05d}.jpg", jpeg_bytes(smooth_photo(rng, colour=True)))


class BaselineShardImages(ShardImages):
    """The first version: always resample (256 -> 258 at 224), float32 samples."""

    def __getitem__(self, item: Item):  # type: ignore[no-untyped-def]
        index, seed = item
        img = resize_short_side(self._image(index), round(self.image_size * CONTEXT))
        return random_crop_flip(img, self.image_size, seed).float() / 255.0


def loader_rate(dataset: ShardImages, workers: int, batch: int, steps: int) -> float:
    sampler = StepBatchSampler(len(dataset), batch, seed=0, start_step=0, total_steps=steps + 2, blocks=dataset.blocks)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=workers, persistent_workers=False)
    it = iter(loader)
    next(it), next(it)  # warm-up: workers started, first shards read
    start = time.perf_counter()
    n = sum(b.shape[0] for b in it)
    return n / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samples", type=int, default=2000)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=64)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        make_colour_photos(f"{tmp}/photos", args.samples)
        build_dataset(f"{tmp}/photos", f"{tmp}/dataset", shard_size=500, workers=args.workers)
        rates = {}
        for name, cls in (("baseline", BaselineShardImages), ("project", ShardImages)):
            dataset = cls(f"{tmp}/dataset", args.size)
            steps = max(4, len(dataset) // args.batch_size - 2)
            rates[name] = (loader_rate(dataset, 0, args.batch_size, steps), loader_rate(dataset, args.workers, args.batch_size, steps))
    (b1, bn), (p1, pn) = rates["baseline"], rates["project"]
    print(json.dumps({
        "bench": "train_loader", "samples": len(dataset), "size": args.size, "batch": args.batch_size, "workers": args.workers,
        "baseline_in_process_samples_per_s": round(b1, 1), "project_in_process_samples_per_s": round(p1, 1), "ratio_in_process": round(p1 / b1, 2),
        "baseline_workers_samples_per_s": round(bn, 1), "project_workers_samples_per_s": round(pn, 1), "ratio_workers": round(pn / bn, 2),
        "machine": machine(),
    }), flush=True)


if __name__ == "__main__":
    main()
