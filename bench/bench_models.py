"""Model benchmarks: inference images/s and training peak memory per image, for both models.

Run: `.venv/bin/python bench/bench_models.py [--device cpu|cuda] [--size 224]`. Prints one JSON
object per line; the last line compares the two models (the seed's memory claim: the residual
encoder fit 6 images where the hypercolumn model fit 1).

Peak memory per image is the slope of peak memory over batch size (two batch sizes, each in a
fresh subprocess): on CPU the process's peak RSS (Linux VmHWM, reset just before the step),
on CUDA `torch.cuda.max_memory_allocated`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch

from bench.common import machine
from colorize_core.model.config import ARCHS
from colorize_core.model.device import autocast_dtype, resolve_device
from colorize_core.model.loss import BlurredUVLoss
from colorize_core.model.models import ModelConfig, build_model


def inference_rate(arch: str, device: torch.device, size: int, batch: int, iters: int) -> float:
    model = build_model(ModelConfig(arch=arch, image_size=size)).to(device).eval()  # type: ignore[arg-type]
    x = torch.rand(batch, 1, size, size, device=device)
    dtype = autocast_dtype(device)
    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        model(x)  # warm-up (allocator, cudnn autotune)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(iters):
            model(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
    return batch * iters / (time.perf_counter() - start)


def train_step_peak(arch: str, device: torch.device, size: int, batch: int) -> int:
    """Peak bytes during one training step (frozen backbone, as trained by default)."""
    model = build_model(ModelConfig(arch=arch, image_size=size)).to(device).train()  # type: ignore[arg-type]
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    loss_fn = BlurredUVLoss().to(device)
    gray = torch.rand(batch, 1, size, size, device=device)
    target = torch.rand(batch, 2, size, size, device=device)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    else:
        _reset_peak_rss()
    dtype = autocast_dtype(device)
    with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        pred = model(gray)
    loss_fn(pred, target).backward()
    opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated()
    return _peak_rss()


def _reset_peak_rss() -> None:
    # Linux: writing 5 to clear_refs resets this process's peak RSS (VmHWM) to its current RSS.
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _peak_rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # reported in kB
    raise RuntimeError("no VmHWM in /proc/self/status")


def peak_in_subprocess(arch: str, device: str, size: int, batch: int) -> int:
    code = (
        "import sys; from bench.bench_models import train_step_peak; from colorize_core.model.device import resolve_device;"
        f"print(train_step_peak({arch!r}, resolve_device({device!r}), {size}, {batch}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--mem-batches", type=int, nargs=2, default=(1, 3), metavar=("B1", "B2"))
    args = p.parse_args()
    device = resolve_device(args.device)
    common = {"machine": machine(), "device": device.type, "size": args.size, "torch": torch.__version__}
    per_image: dict[str, float] = {}
    for arch in ARCHS:
        rate = inference_rate(arch, device, args.size, args.batch_size, args.iters)
        print(json.dumps({"bench": "inference", "model": arch, "images_per_s": round(rate, 2), "batch": args.batch_size, **common}), flush=True)
        b1, b2 = args.mem_batches
        peaks = [peak_in_subprocess(arch, str(device), args.size, b) for b in (b1, b2)]
        per_image[arch] = (peaks[1] - peaks[0]) / (b2 - b1)
        row = {"bench": "train_memory", "model": arch, "peak_bytes": dict(zip((b1, b2), peaks)), "bytes_per_image": int(per_image[arch])}
        print(json.dumps({**row, **common}), flush=True)
    ratio = per_image["hypercolumn"] / per_image["residual_encoder"]
    print(json.dumps({"bench": "train_memory_ratio", "hypercolumn_over_residual_encoder": round(ratio, 2), **common}), flush=True)


if __name__ == "__main__":
    main()
