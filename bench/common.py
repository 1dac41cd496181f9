"""What the benchmarks share: the machine's name that goes with every figure, where
../shared/data is, and synthetic photos with a photo's smoothness (pure noise would make JPEG
decoding look slow)."""

from __future__ import annotations

import io
import platform
from pathlib import Path

import numpy as np
import torch
from PIL import Image

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def machine() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    name = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), name)
    except OSError:
        pass
    from colorize_core.model.cpu_features import cpu_flags

    flags = " ".join(flag for flag, present in cpu_flags().items() if present) or "none of avx2, avx512, amx"
    return f"{name}, {torch.get_num_threads()} threads, flags: {flags}"


def smooth_photo(rng: np.random.Generator, width: int = 500, height: int = 375, *, colour: bool = False) -> Image.Image:
    """Noise at 1/8 scale, upsampled: about a photo's detail and JPEG size."""
    shape = (max(1, height // 8), max(1, width // 8)) + ((3,) if colour else ())
    coarse = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), "RGB" if colour else "L")
    return coarse.resize((width, height), Image.Resampling.BICUBIC)


def jpeg_bytes(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def photo_folder(folder: Path, n: int, width: int, height: int, suffix: str = ".jpg", seed: int = 0) -> Path:
    """`n` smooth gray photos named photo_NNNNN<suffix> in a new `folder`."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        smooth_photo(rng, width, height).save(folder / f"photo_{i:05d}{suffix}")
    return folder


def untrained_checkpoint(path: Path, image_size: int | None = None) -> Path:
    """A checkpoint of the model with untrained weights (the same work as a trained one; no
    download): the default config, or a tiny one at `image_size`."""
    from colorize_core.model.checkpoint import save_checkpoint
    from colorize_core.model.config import ModelConfig
    from colorize_core.model.models import build_model

    torch.manual_seed(0)
    config = ModelConfig() if image_size is None else ModelConfig(image_size=image_size)
    save_checkpoint(path, build_model(config, backbone_weights="none"), meta={"note": "bench"})
    return path
