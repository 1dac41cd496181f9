"""Inference benchmarks, each figure beside its baseline from the same run:

- model only at 224 px: plain fp32 eager batch 1 vs the fast path (batched, channels_last,
  mixed precision where the hardware has it);
- end to end on an archive of gray JPEGs made by the script (read, decode, colorize, encode,
  write, Parquet rows): the plain sequential shard vs the prefetching pipeline, and both against
  model-only time (the overhead of decode, encode and storage); JPEG decode and encode on the
  model's device (nvJPEG on CUDA) vs Pillow; then through the Prefect flow;
- training images/s at 224 px.

Run: `.venv/bin/python -m bench.bench_infer [--device cpu|cuda] [--images N]`. JSON lines.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.common import SHARED, machine, smooth_photo
from colorize_core.archive.shards import colorize_shard
from colorize_core.archive.listing import list_images
from colorize_core.model.checkpoint import save_checkpoint
from colorize_core.model.device import amp_dtype, resolve_device
from colorize_core.model.infer import PLAIN, Colorizer, InferenceOptions
from colorize_core.model.loss import BlurredUVLoss
from colorize_core.model.models import ModelConfig, build_model
from colorize_core.storage.stores import open_store


def make_archive(root: Path, n: int, data: Path) -> Path:
    """n gray JPEGs: ImageNet photos from ../shared/data when present, else synthetic 500x375 ones."""
    root.mkdir(parents=True, exist_ok=True)
    photos = sorted((data / "photos-train").glob("*"))[:n]
    rng = np.random.default_rng(0)
    for i in range(n):
        if i < len(photos):
            img = Image.open(photos[i]).convert("L")
        else:
            img = smooth_photo(rng)
        img.save(root / f"img_{i:05d}.jpg", quality=90)
    return root


def model_rate(colorizer: Colorizer, batch: int, seconds: float = 8.0) -> float:
    s = colorizer.image_size
    x = torch.rand(batch, 1, s, s)
    colorizer.predict_uv(x)  # warm-up
    if colorizer.device.type == "cuda":
        torch.cuda.synchronize()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        colorizer.predict_uv(x)
        n += batch
    if colorizer.device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - start)


def shard_rate(src: Path, out: Path, colorizer: Colorizer, io_threads: int, device_jpeg: bool = False) -> float:
    items = list_images(open_store(str(src)))
    start = time.perf_counter()
    colorize_shard(str(src), str(out), items, colorizer, run_id="bench", shard=0, io_threads=io_threads, device_jpeg=device_jpeg)
    return len(items) / (time.perf_counter() - start)


def train_rate(device: torch.device, size: int, batch: int, steps: int, dtype: torch.dtype | None, channels_last: bool = False) -> float:
    model = build_model(ModelConfig(image_size=size)).to(device).train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    loss_fn = BlurredUVLoss().to(device)
    gray, target = torch.rand(batch, 1, size, size, device=device), torch.rand(batch, 2, size, size, device=device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        gray = gray.contiguous(memory_format=torch.channels_last)
    for i in range(steps + 1):
        if i == 1:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            pred = model(gray)
        loss = loss_fn(pred, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--images", type=int, default=96)
    p.add_argument("--data", type=Path, default=SHARED)
    p.add_argument("--prefect", action="store_true", help="also time the colorize-archive flow")
    args = p.parse_args()
    device = resolve_device(args.device)
    common = {"machine": machine(), "device": device.type, "size": args.size, "torch": torch.__version__}

    def emit(row: dict[str, object]) -> None:
        print(json.dumps({**row, **common}), flush=True)

    torch.manual_seed(0)
    model = build_model(ModelConfig(image_size=args.size))
    plain = Colorizer(model, device=device, batch_size=1, options=PLAIN)
    plain_rate = model_rate(plain, 1)
    fast = Colorizer(build_model(ModelConfig(image_size=args.size)), device=device, batch_size=args.batch_size, options=InferenceOptions())
    fast.model.load_state_dict(model.state_dict())
    fast_rate = model_rate(fast, args.batch_size)
    emit({"bench": "model_only", "plain_fp32_b1_images_per_s": round(plain_rate, 2), "fast_images_per_s": round(fast_rate, 2),
          "ratio": round(fast_rate / plain_rate, 2), "batch": args.batch_size, "amp": str(fast.amp_dtype)})

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        src = make_archive(root / "archive", args.images, args.data)
        seq = shard_rate(src, root / "out-seq", fast, io_threads=0)
        piped = shard_rate(src, root / "out-piped", fast, io_threads=4)
        emit({"bench": "end_to_end_shard", "images": args.images, "sequential_images_per_s": round(seq, 2),
              "pipelined_images_per_s": round(piped, 2), "pipeline_ratio": round(piped / seq, 2),
              "model_only_images_per_s": round(fast_rate, 2), "model_only_over_end_to_end": round(fast_rate / piped, 2)})
        # JPEG decode/encode on the model's device (nvJPEG on CUDA; libjpeg-turbo in the model
        # thread on CPU) against the Pillow pipeline above, same images.
        dev = shard_rate(src, root / "out-device", fast, io_threads=4, device_jpeg=True)
        emit({"bench": "end_to_end_device_jpeg", "images": args.images, "pillow_pipelined_images_per_s": round(piped, 2),
              "device_jpeg_images_per_s": round(dev, 2), "ratio": round(dev / piped, 2),
              "model_only_over_end_to_end": round(fast_rate / dev, 2)})
        if args.prefect:
            from prefect.task_runners import ThreadPoolTaskRunner

            from flows.colorize_archive import colorize_archive

            ckpt = root / "m.safetensors"
            save_checkpoint(ckpt, fast.model)
            flow = colorize_archive.with_options(task_runner=ThreadPoolTaskRunner(max_workers=1))
            # Warm-up on one image: starts the local Prefect server and loads the model once, as a
            # long-running worker would have; the timed run then shows the per-run overhead.
            warm = make_archive(root / "warm", 1, args.data)
            flow(str(warm), str(root / "out-warm"), checkpoint=str(ckpt), device=str(device), batch_size=args.batch_size)
            start = time.perf_counter()
            summary = flow(str(src), str(root / "out-flow"), checkpoint=str(ckpt), shard_size=args.images, device=str(device), batch_size=args.batch_size)
            rate = summary.ok / (time.perf_counter() - start)
            emit({"bench": "end_to_end_prefect", "images": args.images, "images_per_s": round(rate, 2),
                  "model_only_over_end_to_end": round(fast_rate / rate, 2), "note": "server warm; includes planning, artifacts and the gallery"})
    steps = 3 if device.type == "cpu" else 50
    fp32 = train_rate(device, args.size, args.batch_size, steps, None)
    amp = train_rate(device, args.size, args.batch_size, steps, amp_dtype(device))
    fast = train_rate(device, args.size, args.batch_size, steps, amp_dtype(device), channels_last=True)
    emit({"bench": "train_step", "fp32_images_per_s": round(fp32, 2), "amp_images_per_s": round(amp, 2), "ratio": round(amp / fp32, 2),
          "amp_channels_last_images_per_s": round(fast, 2), "fast_ratio": round(fast / fp32, 2),
          "amp": str(amp_dtype(device)), "batch": args.batch_size})


if __name__ == "__main__":
    main()
