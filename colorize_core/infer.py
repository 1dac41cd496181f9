"""`Colorizer`: images of any size, mode and orientation in; full-resolution colour images out.

The model sees the gray image resized to its working size (a square, in batches); the predicted
chroma is upsampled to the original size and joined with the original full-resolution luma, so
detail and gray levels come from the input and only the colour comes from the model.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from colorize_core.checkpoint import load_model
from colorize_core.color import unit_to_uv, yuv_to_rgb_in_gamut
from colorize_core.device import autocast_dtype, resolve_device
from colorize_core.imageio import luma_and_alpha

T = TypeVar("T")


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class Colorizer:
    """Runs a colorization model over PIL images in batches at the model's working size."""

    def __init__(
        self,
        model: nn.Module,
        *,
        device: str | torch.device = "auto",
        batch_size: int = 8,
        image_size: int | None = None,
    ) -> None:
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.batch_size = batch_size
        self.image_size = image_size or model.config.image_size  # type: ignore[union-attr]
        if self.image_size % 8:
            raise ValueError(f"working size must be a multiple of 8, got {self.image_size}")
        self.model_id: str = getattr(model, "model_id", "untracked")

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str], **kwargs: object) -> "Colorizer":
        return cls(load_model(path), **kwargs)  # type: ignore[arg-type]

    @torch.inference_mode()
    def predict_uv(self, gray: torch.Tensor) -> torch.Tensor:
        """(N, 1, S, S) luma in [0, 1] -> (N, 2, S, S) UV chroma (in YUV units, fp32)."""
        gray = gray.to(self.device, non_blocking=True)
        dtype = autocast_dtype(self.device)
        with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
            unit = self.model(gray)
        return unit_to_uv(unit.float())

    def colorize_luma(self, lumas: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Full-size luma arrays (H, W) float in [0, 1] -> uint8 RGB arrays (H, W, 3), one batch."""
        s = self.image_size
        small = torch.cat(
            [
                F.interpolate(torch.from_numpy(y)[None, None], size=(s, s), mode="bilinear", antialias=True, align_corners=False)
                for y in lumas
            ]
        )  # (N, 1, S, S)
        uv_small = self.predict_uv(small.clamp(0.0, 1.0)).cpu()  # (N, 2, S, S)
        out: list[np.ndarray] = []
        for y, uv in zip(lumas, uv_small):
            h, w = y.shape
            uv_full = F.interpolate(uv[None], size=(h, w), mode="bilinear", align_corners=False)  # (1, 2, H, W)
            rgb = yuv_to_rgb_in_gamut(torch.from_numpy(y)[None, None], uv_full)[0]  # (3, H, W)
            out.append((rgb * 255.0).round_().to(torch.uint8).permute(1, 2, 0).numpy())
        return out

    def colorize(self, images: Sequence[Image.Image]) -> list[Image.Image]:
        """Colorize decoded images (any mode; alpha kept) at their own resolution."""
        results: list[Image.Image] = []
        for batch in batched(images, self.batch_size):
            pairs = [luma_and_alpha(img) for img in batch]
            rgbs = self.colorize_luma([y for y, _ in pairs])
            for rgb, (_, alpha) in zip(rgbs, pairs):
                out = Image.fromarray(rgb, "RGB")
                if alpha is not None:
                    out.putalpha(alpha)
                results.append(out)
        return results
