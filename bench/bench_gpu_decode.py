"""JPEG decoding throughput: Pillow on one CPU thread vs nvJPEG through
`torchvision.io.decode_jpeg(device="cuda")` in batches, on JPEGs made by the script.

Run on a GPU machine: `python -m bench.bench_gpu_decode [--images 512]`. Prints JSON lines.
"""

from __future__ import annotations

import argparse
import io
import json
import time

import numpy as np
import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg

from bench.common import jpeg_bytes, machine, smooth_photo


def make_jpegs(n: int) -> list[bytes]:
    rng = np.random.default_rng(0)
    return [jpeg_bytes(smooth_photo(rng)) for _ in range(n)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--images", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=128)
    args = p.parse_args()
    blobs = make_jpegs(args.images)
    start = time.perf_counter()
    for b in blobs:
        Image.open(io.BytesIO(b)).convert("L").load()
    cpu_rate = len(blobs) / (time.perf_counter() - start)
    row = {"bench": "jpeg_decode", "images": len(blobs), "pillow_cpu_1thread_images_per_s": round(cpu_rate, 1), "machine": machine()}
    if torch.cuda.is_available():
        tensors = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs]
        decode_jpeg(tensors[: args.batch_size], mode=ImageReadMode.GRAY, device="cuda")  # warm-up
        torch.cuda.synchronize()
        start = time.perf_counter()
        for i in range(0, len(tensors), args.batch_size):
            decode_jpeg(tensors[i : i + args.batch_size], mode=ImageReadMode.GRAY, device="cuda")
        torch.cuda.synchronize()
        gpu_rate = len(blobs) / (time.perf_counter() - start)
        row.update(nvjpeg_images_per_s=round(gpu_rate, 1), ratio=round(gpu_rate / cpu_rate, 2))
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
