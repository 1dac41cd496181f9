"""`Colorizer`: images of any size, mode and orientation in; full-resolution colour images out.

The model sees the gray image resized to its working size (a square, in batches); the predicted
chroma is upsampled to the original size and joined with the original full-resolution luma, so
detail and gray levels come from the input and only the colour comes from the model.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from colorize_core.checkpoint import load_model
from colorize_core.color import unit_to_uv, yuv_to_rgb_in_gamut
from colorize_core.device import amp_dtype, inference_batch_size, resolve_device
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


@dataclass(frozen=True)
class InferenceOptions:
    """How the model runs. The default is the fast path; `PLAIN` is fp32 eager, the reference."""

    channels_last: bool = True  # NHWC: what cuDNN and oneDNN convolutions prefer
    mixed_precision: bool = True  # bf16 autocast on CUDA and on CPUs with native bf16 (fp16 on old GPUs)
    compile: bool = False  # torch.compile; pays on long runs on CUDA, costs a minute to start
    pad_batches: bool = True  # pad the last batch: one static shape for compile and cudnn.benchmark


PLAIN = InferenceOptions(channels_last=False, mixed_precision=False, compile=False, pad_batches=False)


class Colorizer:
    """Runs a colorization model over PIL images in batches at the model's working size."""

    def __init__(
        self,
        model: nn.Module,
        *,
        device: str | torch.device = "auto",
        batch_size: int | None = None,  # None: 8 on CPU, 64 on CUDA
        image_size: int | None = None,
        options: InferenceOptions = InferenceOptions(),
    ) -> None:
        self.device = resolve_device(device)
        self.options = options
        self.model = model.to(self.device).eval()
        if options.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # one input shape: autotune once, reuse
        self.amp_dtype = amp_dtype(self.device) if options.mixed_precision else None
        self._forward = torch.compile(self.model) if options.compile else self.model
        self.batch_size = inference_batch_size(self.device, batch_size)
        self.image_size = image_size or model.config.image_size  # type: ignore[union-attr]
        if self.image_size % 8:
            raise ValueError(f"working size must be a multiple of 8, got {self.image_size}")
        self.model_id: str = getattr(model, "model_id", "untracked")

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str], **kwargs: object) -> "Colorizer":
        return cls(load_model(path), **kwargs)  # type: ignore[arg-type]

    @torch.inference_mode()
    def predict_uv(self, gray: torch.Tensor) -> torch.Tensor:
        """(N, 1, S, S) luma in [0, 1] -> (N, 2, S, S) UV chroma (in YUV units, fp32), on the model's device."""
        n = gray.shape[0]
        if self.options.pad_batches and n < self.batch_size:
            gray = torch.cat([gray, gray.new_zeros(self.batch_size - n, *gray.shape[1:])])
        if self.device.type == "cuda" and gray.device.type == "cpu":
            gray = gray.pin_memory()  # lets the copy below run asynchronously
        gray = gray.to(self.device, non_blocking=True)
        if self.options.channels_last:
            gray = gray.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            unit = self._forward(gray)
        return unit_to_uv(unit[:n].float())

    @torch.inference_mode()
    def colorize_planes(self, lumas: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Full-size luma planes (H, W) float in [0, 1], one batch -> uint8 RGB (3, H, W) each.

        Works where the planes are: CPU planes (the Pillow path) meet the model's device only at
        its working size; planes already on the GPU (nvJPEG) never leave it."""
        s = self.image_size
        small = torch.cat(
            [F.interpolate(y[None, None], size=(s, s), mode="bilinear", antialias=True, align_corners=False) for y in lumas]
        )  # (N, 1, S, S)
        uv_small = self.predict_uv(small.clamp(0.0, 1.0))  # (N, 2, S, S) on the model's device
        out: list[torch.Tensor] = []
        for y, uv in zip(lumas, uv_small.to(lumas[0].device)):
            h, w = y.shape
            uv_full = F.interpolate(uv[None], size=(h, w), mode="bilinear", align_corners=False)  # (1, 2, H, W)
            rgb = yuv_to_rgb_in_gamut(y[None, None], uv_full)[0]  # (3, H, W)
            out.append((rgb * 255.0).round_().to(torch.uint8))
        return out

    def colorize_luma(self, lumas: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Full-size luma arrays (H, W) float in [0, 1] -> uint8 RGB arrays (H, W, 3), one batch."""
        planes = self.colorize_planes([torch.from_numpy(y) for y in lumas])
        return [rgb.permute(1, 2, 0).numpy() for rgb in planes]

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
