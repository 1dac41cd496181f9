"""Memory per pixel: peak RSS of colorizing one huge gray scan through `Colorizer.colorize`.

Each measurement runs in a fresh subprocess (ru_maxrss is a high-water mark for the whole
process, torch and the model included): make a smooth synthetic gray scan of N MP (portrait,
1:sqrt(2), like a scanned page), build a tiny untrained model (weights do not change memory),
warm the model up on a small image, then colorize the scan once. Reported: the peak RSS, the
bytes per pixel above the RSS just before the call, seconds, and (unless --no-reference) the
max/mean difference against the first version's formula (full-size float32 planes: bilinear
`F.interpolate` of the chroma to (H, W), then `yuv_to_rgb_in_gamut`), computed in a second
subprocess. The reference needs ~10 GB at 100 MP; skip it on smaller machines.

`--source gray16-tiff`: a 16-bit gray TIFF scan (uncompressed, as scanners write masters; the
smooth scan in the high byte, noise in the low byte, as a sensor gives) goes through the whole
`colorize images` path instead (`colorize_files`: decode, colorize, encode a labelled 16-bit RGB
TIFF, write), after a warm-up on a small one. Reported as well: the output's size and the largest
difference between its BT.601 luma and the source's, in levels of 65,535. `--source rgb16-png`:
the same through a 16-bit RGB PNG (a sepia-toned print's scan: the smooth scan toned, noise in
every channel's low byte), which Pillow reads at 8 bits and imagecodecs again at 16; the output
is a 16-bit RGB PNG.

Run: `.venv/bin/python -m bench.bench_memory [--megapixels 100] [--no-reference] [--source gray16-tiff|rgb16-png]`.
JSON lines.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import imagecodecs
import numpy as np
import tifffile
import torch
import torch.nn.functional as F
from PIL import Image

from bench.common import machine, smooth_photo
from colorize_core.local_files import colorize_files, expand_inputs
from colorize_core.model.color import KB, KG, KR, yuv_to_rgb_in_gamut
from colorize_core.model.infer import Colorizer
from colorize_core.model.models import ModelConfig, build_model
from colorize_core.storage.deep import Image16, encode_png16
from colorize_core.storage.imageio import luma_and_alpha

MB = 1 << 20


def scan_size(megapixels: float) -> tuple[int, int]:
    """(width, height) of a portrait 1:sqrt(2) page of about `megapixels` MP."""
    w = round(math.sqrt(megapixels * 1e6 / math.sqrt(2)))
    return w, round(w * math.sqrt(2))


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return kb * 1024


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KB on Linux


def reference_rgb(colorizer: Colorizer, img: Image.Image) -> np.ndarray:
    """The first version of `colorize_planes`, for one image: full-size float32 planes."""
    y = torch.from_numpy(luma_and_alpha(img)[0])
    s = colorizer.image_size
    small = F.interpolate(y[None, None], size=(s, s), mode="bilinear", antialias=True, align_corners=False)
    uv = colorizer.predict_uv(small.clamp(0.0, 1.0))
    with torch.inference_mode():
        uv_full = F.interpolate(uv, size=y.shape, mode="bilinear", align_corners=False)
        rgb = yuv_to_rgb_in_gamut(y[None, None], uv_full)[0]
        return (rgb * 255.0).round_().to(torch.uint8).permute(1, 2, 0).numpy()


def child(megapixels: float, out: Path, reference: bool) -> None:
    """One measurement in this (fresh) process; prints one JSON object, saves the output."""
    w, h = scan_size(megapixels)
    scan = smooth_photo(np.random.default_rng(0), w, h)  # mode "L", uint8
    torch.manual_seed(0)
    colorizer = Colorizer(build_model(ModelConfig(image_size=64), backbone_weights="none"), device="cpu", batch_size=1)
    colorizer.colorize([smooth_photo(np.random.default_rng(1), 300, 200)])  # warm-up: lazy kernels, allocator pools
    before = rss_bytes()
    start = time.perf_counter()
    rgb = reference_rgb(colorizer, scan) if reference else colorizer.colorize([scan])[0]
    seconds = time.perf_counter() - start
    peak = peak_rss_bytes()
    np.save(out, np.asarray(rgb))
    print(json.dumps({"width": w, "height": h, "rss_before_mb": round(before / MB), "peak_rss_mb": round(peak / MB),
                      "bytes_per_pixel": round((peak - before) / (w * h), 2), "seconds": round(seconds, 2)}))


def gray16_scan(width: int, height: int, path: Path, seed: int = 0) -> None:
    """A 16-bit gray TIFF at `path`: the smooth scan in the high byte, uniform noise in the low."""
    rng = np.random.default_rng(seed)
    high = np.asarray(smooth_photo(rng, width, height))
    scan = np.empty((height, width), dtype=np.uint16)
    for r in range(0, height, 1024):
        rows = high[r : r + 1024].astype(np.uint16) << 8
        scan[r : r + 1024] = rows | rng.integers(0, 256, rows.shape, dtype=np.uint16)
    tifffile.imwrite(path, scan, metadata=None)


SEPIA = (1.08, 0.98, 0.80)  # a toned print's channel gains (the gray's luma kept within ~1%)


def rgb16_scan(width: int, height: int, path: Path, seed: int = 0) -> None:
    """A 16-bit sepia-toned RGB PNG at `path` (written by colorize_core's 16-bit PNG writer: the
    fast one at hand; the bench reads it back with imagecodecs' libpng)."""
    rng = np.random.default_rng(seed)
    high = np.asarray(smooth_photo(rng, width, height))
    scan = np.empty((height, width, 3), dtype=np.uint16)
    for r in range(0, height, 1024):
        base = high[r : r + 1024].astype(np.float32) * 257.0
        for c, gain in enumerate(SEPIA):
            noise = rng.integers(0, 256, base.shape, dtype=np.uint16)
            scan[r : r + 1024, :, c] = np.clip(base * gain, 0, 65535 - 255).astype(np.uint16) + noise
    path.write_bytes(encode_png16(Image16(scan), None))


SCANS = {"gray16-tiff": ("scan.tif", gray16_scan), "rgb16-png": ("scan.png", rgb16_scan)}


def child_sixteen(megapixels: float, tmp: Path, source: str) -> None:
    """One measurement of `colorize_files` on a 16-bit scan in this (fresh) process."""
    w, h = scan_size(megapixels)
    name, make = SCANS[source]
    torch.manual_seed(0)
    colorizer = Colorizer(build_model(ModelConfig(image_size=64), backbone_weights="none"), device="cpu", batch_size=1)
    warmup = tmp / ("warmup" + Path(name).suffix)
    make(300, 200, warmup, seed=1)
    colorize_files(expand_inputs([warmup]), tmp / "warmup-out", colorizer)  # lazy kernels, allocator pools
    before = rss_bytes()
    start = time.perf_counter()
    (result,) = colorize_files(expand_inputs([tmp / name]), tmp / "out", colorizer)
    seconds = time.perf_counter() - start
    peak = peak_rss_bytes()
    assert result.ok, result.error
    out = Path(result.output)  # type: ignore[arg-type]
    print(json.dumps({"width": w, "height": h, "rss_before_mb": round(before / MB), "peak_rss_mb": round(peak / MB),
                      "bytes_per_pixel": round((peak - before) / (w * h), 2), "seconds": round(seconds, 2),
                      "output_mb": round(out.stat().st_size / MB)}))


def _read16(path: Path) -> np.ndarray:
    """A 16-bit TIFF or PNG's pixels, by readers that are not the writers'."""
    return tifffile.imread(path) if path.suffix == ".tif" else imagecodecs.png_decode(path.read_bytes())


def luma_difference(src: Path, out: Path, rows: int = 512) -> float:
    """Largest |BT.601 luma of the 16-bit RGB output - the 16-bit source's|, in levels."""
    source, rgb = _read16(src), _read16(out)
    assert rgb.dtype == np.uint16 and rgb.shape == (*source.shape[:2], 3), (rgb.dtype, rgb.shape)
    worst = 0.0
    for r in range(0, source.shape[0], rows):
        f = rgb[r : r + rows].astype(np.float64)
        y = f[..., 0] * KR + f[..., 1] * KG + f[..., 2] * KB
        s = source[r : r + rows].astype(np.float64)
        want = s if s.ndim == 2 else s[..., 0] * KR + s[..., 1] * KG + s[..., 2] * KB
        worst = max(worst, float(np.abs(y - want).max()))
    return round(worst, 3)


def run_child(megapixels: float, out: Path, reference: bool, source: str = "gray8") -> dict[str, object]:
    cmd = [sys.executable, "-m", "bench.bench_memory", "--child", str(out), "--megapixels", str(megapixels), "--source", source]
    cmd += ["--reference"] if reference else []
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def difference(a_path: Path, b_path: Path, rows: int = 512) -> tuple[int, float]:
    """Max and mean absolute difference of two uint8 (H, W, 3) .npy files, read in strips."""
    a, b = np.load(a_path, mmap_mode="r"), np.load(b_path, mmap_mode="r")
    assert a.shape == b.shape, (a.shape, b.shape)
    worst, total = 0, 0
    for r in range(0, a.shape[0], rows):
        d = np.abs(a[r : r + rows].astype(np.int16) - b[r : r + rows].astype(np.int16))
        worst, total = max(worst, int(d.max())), total + int(d.sum(dtype=np.int64))
    return worst, total / a.size


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--megapixels", type=float, default=100.0)
    p.add_argument("--no-reference", action="store_true", help="skip the full-size reference (needs ~10 GB at 100 MP)")
    p.add_argument("--source", choices=["gray8", *SCANS], default="gray8",
                   help="gray8: an 8-bit scan through Colorizer.colorize; gray16-tiff, rgb16-png: a 16-bit scan through colorize_files")
    p.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--reference", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:
        if args.source in SCANS:
            child_sixteen(args.megapixels, args.child, args.source)
        else:
            child(args.megapixels, args.child, args.reference)
        return
    common = {"machine": machine(), "torch": torch.__version__, "megapixels": args.megapixels}
    if args.source in SCANS:
        name, make = SCANS[args.source]
        with tempfile.TemporaryDirectory() as tmp:
            make(*scan_size(args.megapixels), Path(tmp) / name)
            row = {"bench": f"colorize_memory_{args.source.replace('-', '_')}", **run_child(args.megapixels, Path(tmp), False, args.source)}
            out = Path(tmp) / "out" / name
            row["max_luma_diff_levels"] = luma_difference(Path(tmp) / name, out)  # here: the child's peak is not the reader's
        print(json.dumps({**row, **common}), flush=True)
        return
    with tempfile.TemporaryDirectory() as tmp:
        out, ref = Path(tmp) / "out.npy", Path(tmp) / "ref.npy"
        row = {"bench": "colorize_memory", **run_child(args.megapixels, out, reference=False)}
        if not args.no_reference:
            ref_row = run_child(args.megapixels, ref, reference=True)
            worst, mean = difference(out, ref)
            row |= {"reference_peak_rss_mb": ref_row["peak_rss_mb"], "reference_bytes_per_pixel": ref_row["bytes_per_pixel"],
                    "reference_seconds": ref_row["seconds"], "max_abs_diff": worst, "mean_abs_diff": float(f"{mean:.3g}")}
        print(json.dumps({**row, **common}), flush=True)


if __name__ == "__main__":
    main()
