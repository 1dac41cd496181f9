"""`Colorizer`: images of any size, mode and orientation in; full-resolution colour images out.

The model sees the gray image resized to its working size (a square, in batches); the predicted
chroma is upsampled to the original size and joined with the original full-resolution luma, so
detail and gray levels come from the input and only the colour comes from the model.

Memory stays bounded per pixel: luma stays at the source's precision (uint8 for 8-bit scans),
and everything in float (the resize for the model, chroma upsampling, the join) runs over strips
of rows, written into one preallocated uint8 output (uint16 for a 16-bit source whose writer
keeps its depth: `colorize_keeping_depth`). A 100 MP gray scan takes ~8 bytes a pixel
beyond its input (luma 1, output array 3, output PIL image 4), not ~96 in full-size float planes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from colorize_core.settings import colorize_home
from colorize_core.model.checkpoint import load_model
from colorize_core.model.color import unit_to_uv, yuv_to_rgb_in_gamut
from colorize_core.model.cpu_path import choose_cpu_path
from colorize_core.model.device import amp_dtype, inference_batch_size, resolve_device
from colorize_core.storage.deep import Image16
from colorize_core.storage.imageio import ColorImage, is_sixteen_bit, luma_plane, luma_plane16
from colorize_core.storage.stores import split_uri

T = TypeVar("T")
log = logging.getLogger(__name__)

# Pixels in one strip of rows; each costs ~80 bytes in float through the join. On CPU, ~2 MP:
# each op on a strip is one parallel region, and with other threads busy (a shard's I/O threads)
# thousands of small strips wait on the scheduler (0.25 MP strips took 6x as long as 2 MP ones
# on the 2-core VM beside one busy process), while bigger ones only cost memory and page faults.
# On CUDA bigger strips keep kernel launches few.
STRIP_PIXELS_CPU = 1 << 21
STRIP_PIXELS_CUDA = 1 << 23


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
    # On CPU: "auto" (int8 for a model loaded from a checkpoint; else bf16 on CPUs with native
    # bf16, fp32 on the others), "plain" (fp32), "bf16" or "int8" (OpenVINO, cached by model id
    # beside the checkpoint). COLORIZE_CPU_PATH overrides "auto". The policy: cpu_path.py.
    cpu_path: str = "auto"


PLAIN = InferenceOptions(channels_last=False, mixed_precision=False, compile=False, pad_batches=False, cpu_path="plain")


@contextmanager
def cudnn_autotune(on: bool) -> Iterator[None]:
    """cuDNN's autotuner (`cudnn.benchmark`) for one forward: padded batches give one input
    shape, tuned once and reused. Scoped, not set for the process by a constructor: training or
    another library in the same process keeps its own setting. The flag is process-wide, so two
    threads' forwards may overlap and one restore it early: that costs the other some speed,
    never a different result."""
    if not on or torch.backends.cudnn.benchmark:
        yield
        return
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = False


def default_cache_dir(checkpoint: str | os.PathLike[str]) -> Path:
    """Where converted models of a checkpoint go: `.colorize-cache/` beside a local checkpoint,
    $COLORIZE_HOME/cache for one in object storage or in a folder this process cannot write."""
    root = split_uri(checkpoint)[0].local_path()
    if root is None or not os.access(root, os.W_OK):  # read-only: still convert once
        return colorize_home() / "cache"
    return root / ".colorize-cache"


class Colorizer:
    """Runs a colorization model over PIL images in batches at the model's working size."""

    def __init__(
        self,
        model: nn.Module,
        *,
        device: str | torch.device = "auto",
        batch_size: int | None = None,  # None: the device's default (defaults.py)
        image_size: int | None = None,
        options: InferenceOptions = InferenceOptions(),
        cache_dir: str | os.PathLike[str] | None = None,  # where converted models are kept; None: in memory only
        fixed_weights: bool = False,  # a model from a checkpoint: converting it (int8) pays; `from_checkpoint` sets it
    ) -> None:
        self.device = resolve_device(device)
        self.options = options
        self.model = model.to(self.device).eval()
        if options.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.batch_size = inference_batch_size(self.device, batch_size)
        self.image_size = image_size or model.config.image_size  # type: ignore[union-attr]
        if self.image_size % 8:
            raise ValueError(f"working size must be a multiple of 8, got {self.image_size}")
        self.model_id: str = getattr(model, "model_id", "untracked")
        self.cpu_path: str | None = None  # on CPU: the path taken, "plain" | "bf16" | "int8"
        self._runner = None  # a converted model (the int8 path) that replaces the torch forward
        if self.device.type == "cpu":
            tracked = self.model_id != "untracked"
            path = choose_cpu_path(
                self.model, option=options.cpu_path, mixed_precision=options.mixed_precision, fixed_weights=fixed_weights and tracked,
                model_id=self.model_id, image_size=self.image_size, cache_dir=cache_dir if tracked else None,
            )
            self.cpu_path, self._runner = path.name, path.runner
            self.amp_dtype = torch.bfloat16 if self.cpu_path == "bf16" and options.mixed_precision else None
        else:
            self.amp_dtype = amp_dtype(self.device) if options.mixed_precision else None
        self._forward = torch.compile(self.model) if options.compile and self._runner is None else self.model

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str], **kwargs: object) -> "Colorizer":
        kwargs.setdefault("cache_dir", default_cache_dir(path))
        return cls(load_model(path), fixed_weights=True, **kwargs)  # type: ignore[arg-type]

    @torch.inference_mode()
    def predict_uv(self, gray: torch.Tensor) -> torch.Tensor:
        """(N, 1, S, S) luma in [0, 1] -> (N, 2, S, S) UV chroma (in YUV units, fp32), on the model's device."""
        n = gray.shape[0]
        if self.options.pad_batches and n < self.batch_size:
            gray = torch.cat([gray, gray.new_zeros(self.batch_size - n, *gray.shape[1:])])
        if self.device.type == "cuda" and gray.device.type == "cpu":
            gray = gray.pin_memory()  # lets the copy below run asynchronously
        if self._runner is not None:
            return unit_to_uv(self._runner(gray)[:n])
        gray = gray.to(self.device, non_blocking=True)
        if self.options.channels_last:
            gray = gray.contiguous(memory_format=torch.channels_last)
        with cudnn_autotune(self.device.type == "cuda"), torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            unit = self._forward(gray)
        return unit_to_uv(unit[:n].float())

    @torch.inference_mode()
    def colorize_planes(self, lumas: Sequence[torch.Tensor], *, keep_16bit: bool = False) -> list[torch.Tensor]:
        """Full-size luma planes (H, W), one batch -> uint8 RGB (3, H, W) each, on the planes' device.

        A plane is float in [0, 1], or uint8 (0..255) or uint16 (0..65535) as `luma_plane` gives.
        `keep_16bit`: a uint16 plane gives uint16 RGB (0..65535), joined at 16-bit precision.
        Works where the planes are: CPU planes (the Pillow path) meet the model's device only at
        its working size; planes already on the GPU (nvJPEG) never leave it. CPU outputs are
        channels-last in memory: `.permute(1, 2, 0)` is a contiguous (H, W, 3) image."""
        s = self.image_size
        small = torch.cat([_shrink(y, s) for y in lumas])  # (N, 1, S, S)
        uv_small = self.predict_uv(small.clamp(0.0, 1.0))  # (N, 2, S, S) on the model's device
        return [_join(y, uv, keep_16bit and y.dtype == torch.uint16) for y, uv in zip(lumas, uv_small.to(lumas[0].device))]

    def colorize_luma(self, lumas: Sequence[np.ndarray], *, keep_16bit: bool = False) -> list[np.ndarray]:
        """Full-size luma arrays (H, W) (float in [0, 1], uint8 or uint16) -> uint8 RGB (H, W, 3), one
        batch; with `keep_16bit`, uint16 RGB for uint16 lumas."""
        planes = self.colorize_planes([torch.from_numpy(y) for y in lumas], keep_16bit=keep_16bit)
        return [rgb.permute(1, 2, 0).numpy() for rgb in planes]

    def colorize(self, images: Sequence[Image.Image]) -> list[Image.Image]:
        """Colorize decoded images (any mode; alpha kept) at their own resolution; 8-bit RGB(A)
        outputs whatever the source's depth (`colorize_keeping_depth` keeps 16 bits)."""
        return self._colorize(images, keep_16bit=False)  # type: ignore[return-value]

    def colorize_keeping_depth(self, images: Sequence[Image.Image]) -> list[ColorImage]:
        """`colorize`, except that a 16-bit source (`imageio.is_sixteen_bit`) gives an `Image16`:
        its 16-bit luma joined with the chroma at 16-bit precision, alpha kept at 16 bits. What
        writers of outputs call; 8-bit sources give exactly `colorize`'s images."""
        return self._colorize(images, keep_16bit=True)

    def _colorize(self, images: Sequence[Image.Image], *, keep_16bit: bool) -> list[ColorImage]:
        results: list[ColorImage] = []
        for batch in batched(images, self.batch_size):
            deep = [keep_16bit and is_sixteen_bit(img) for img in batch]
            lumas, alphas = zip(*(luma_plane16(img) if d else luma_plane(img) for img, d in zip(batch, deep)))
            rgbs = self.colorize_luma(lumas, keep_16bit=keep_16bit)
            del lumas  # the luma copies go before the output images come
            for rgb, alpha, d in zip(rgbs, alphas, deep):
                results.append(_image16(rgb, alpha) if d else _image8(rgb, alpha))
        return results


def _image8(rgb: np.ndarray, alpha: Image.Image | None) -> Image.Image:
    out = Image.fromarray(rgb, "RGB")  # contiguous: read in place, no extra copy
    if alpha is not None:
        out.putalpha(alpha)
    return out


def _image16(rgb: np.ndarray, alpha: np.ndarray | None) -> Image16:
    if alpha is None:
        return Image16(rgb)
    rgba = np.empty((*rgb.shape[:2], 4), dtype=np.uint16)  # a 16-bit RGBA source: rare, one copy
    rgba[..., :3], rgba[..., 3] = rgb, alpha
    return Image16(rgba)


def _unit(y: torch.Tensor) -> torch.Tensor:
    """A luma plane or strip -> float32 in [0, 1]: uint8 / 255, uint16 / 65535, floats as they are."""
    if y.is_floating_point():
        return y.float()
    return y.float() / float(torch.iinfo(y.dtype).max)


def _strips(y: torch.Tensor) -> Iterator[tuple[int, int]]:
    """Row ranges [r0, r1) covering the (H, W) plane y, of about a strip's pixels each."""
    h, w = y.shape
    rows = max(1, (STRIP_PIXELS_CUDA if y.is_cuda else STRIP_PIXELS_CPU) // max(1, w))
    for r0 in range(0, h, rows):
        yield r0, min(r0 + rows, h)


def _shrink(y: torch.Tensor, s: int) -> torch.Tensor:
    """(H, W) luma -> (1, 1, S, S) float32, the model's input: antialiased bilinear, the same figures
    as one `F.interpolate` of the full float plane. The resize is separable (PyTorch resizes the
    width, then the height), so the width is resized a strip of rows at a time."""
    wide = torch.cat(
        [
            F.interpolate(_unit(y[r0:r1])[None, None], size=(r1 - r0, s), mode="bilinear", antialias=True, align_corners=False)
            for r0, r1 in _strips(y)
        ],
        dim=2,
    )  # (1, 1, H, S)
    return F.interpolate(wide, size=(s, s), mode="bilinear", antialias=True, align_corners=False)


def _source_rows(r0: int, r1: int, n_in: int, n_out: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For output rows r0..r1 of a bilinear resize (align_corners=False) from n_in to n_out rows:
    the two source rows and the second one's weight, as PyTorch computes them (in float32)."""
    scale = n_in / n_out
    src = ((torch.arange(r0, r1, device=device, dtype=torch.float32) + 0.5) * scale - 0.5).clamp_(min=0.0)
    i0 = src.long()
    i1 = (i0 + 1).clamp_(max=n_in - 1)
    return i0, i1, (src - i0).clamp_(max=1.0)


def _join(y: torch.Tensor, uv_small: torch.Tensor, sixteen_bit: bool = False) -> torch.Tensor:
    """Full-size luma (H, W) and small chroma (2, S, S) -> uint8 RGB (3, H, W), strip by strip;
    uint16 RGB (0..65535) with `sixteen_bit`, so a 16-bit source's gray levels survive the join.

    Bilinear upsampling is separable: the chroma is resized to full width once (2, S, W), then
    each strip of output rows blends its two source rows; the strip is joined with its luma in
    float and written as uint8. Within float rounding of `F.interpolate` to (H, W) in one go."""
    h, w = y.shape
    s = uv_small.shape[-2]
    dtype, top = (torch.uint16, 65535.0) if sixteen_bit else (torch.uint8, 255.0)
    uv_wide = F.interpolate(uv_small[None], size=(s, w), mode="bilinear", align_corners=False)[0]  # (2, S, W)
    if y.is_cuda:  # planar, as nvJPEG encodes it
        out = torch.empty((3, h, w), dtype=dtype, device=y.device)
    else:  # channels-last: (H, W, 3) in memory, as Pillow reads it without a copy
        out = torch.empty((h, w, 3), dtype=dtype).permute(2, 0, 1)
    for r0, r1 in _strips(y):
        i0, i1, l1 = _source_rows(r0, r1, s, h, y.device)
        l1 = l1[:, None]
        uv = uv_wide[:, i0] * (1.0 - l1) + uv_wide[:, i1] * l1  # (2, rows, W)
        rgb = yuv_to_rgb_in_gamut(_unit(y[r0:r1])[None], uv)  # (3, rows, W) in [0, 1]
        out[:, r0:r1] = rgb.mul_(top).round_()
    return out
