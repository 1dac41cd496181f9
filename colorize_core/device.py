"""Device choice shared by training and inference: "auto" means CUDA when present."""

from __future__ import annotations

import torch


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """"auto" | "cpu" | "cuda" | "cuda:N" -> torch.device, with a clear error if CUDA is absent."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but PyTorch sees no CUDA device here")
    return dev


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The mixed-precision type for a device: bf16 where CUDA supports it, else fp16; CPU: none."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
