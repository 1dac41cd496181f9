"""Image quality metrics on uint8 RGB arrays (H, W, 3): PSNR, SSIM, colourfulness and its gap;
and colourfulness of a PIL image of any size, from a reduced copy (`image_colourfulness`).

Colourfulness is Hasler and Suesstrunk's (2003) M = sigma_rgyb + 0.3 * mu_rgyb on the 0-255
scale: 0 for a gray image, ~15 "slightly", ~33 "moderately", ~59 "quite", ~82+ "highly" colourful.
It tracks the L2 loss's known drift toward sepia: a model that averages colours scores low.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image
from scipy.ndimage import correlate1d

# `image_colourfulness` measures a copy of at most this many pixels: enough for stable statistics.
REDUCED_PIXELS = 1_000_000


def _as_float(img: np.ndarray) -> np.ndarray:
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected uint8 RGB (H, W, 3), got {img.dtype} {img.shape}")
    return img.astype(np.float64)


def psnr(pred: np.ndarray, truth: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB for uint8 RGB; inf for identical images."""
    if pred.shape != truth.shape:
        raise ValueError(f"shape mismatch {pred.shape} vs {truth.shape}")
    mse = float(np.mean((_as_float(pred) - _as_float(truth)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def _gaussian_1d(size: int, sigma: float) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _window_mean(img: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Gaussian-weighted mean at each window position that fits inside (H, W, C): "valid" only.
    The window is separable, so two 1-D passes replace one 2-D pass (11x fewer multiplies)."""
    r = len(g) - 1
    out = correlate1d(img, g, axis=0, mode="nearest")
    out = correlate1d(out, g, axis=1, mode="nearest")
    return out[r // 2 : out.shape[0] - r // 2, r // 2 : out.shape[1] - r // 2]


def ssim(pred: np.ndarray, truth: np.ndarray) -> float:
    """Structural similarity (Wang et al. 2004) of uint8 RGB: 11x11 Gaussian window with sigma 1.5,
    per channel, averaged over the window positions that fit inside the image."""
    if pred.shape != truth.shape:
        raise ValueError(f"shape mismatch {pred.shape} vs {truth.shape}")
    x, y = _as_float(pred), _as_float(truth)
    size = min(11, *(d - (1 - d % 2) for d in x.shape[:2]))  # the largest odd window that fits
    g = _gaussian_1d(size, 1.5)
    mx, my = _window_mean(x, g), _window_mean(y, g)
    vx = _window_mean(x * x, g) - mx**2
    vy = _window_mean(y * y, g) - my**2
    cxy = _window_mean(x * y, g) - mx * my
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(s.mean())


def colourfulness(img: np.ndarray) -> float:
    """Hasler-Suesstrunk colourfulness of a uint8 RGB image (0 for gray)."""
    f = _as_float(img)
    rg = f[..., 0] - f[..., 1]
    yb = 0.5 * (f[..., 0] + f[..., 1]) - f[..., 2]
    return float(math.hypot(rg.std(), yb.std()) + 0.3 * math.hypot(rg.mean(), yb.mean()))


def colourfulness_tensor(rgb: torch.Tensor) -> float:
    """`colourfulness` of a uint8 RGB (3, H, W) tensor, on its own device (no copy to the host)."""
    f = rgb.double()  # float64 like the numpy version: the same figure on a 100 MP scan
    rg = f[0] - f[1]
    yb = 0.5 * (f[0] + f[1]) - f[2]
    stats = torch.stack([rg.std(correction=0), yb.std(correction=0), rg.mean(), yb.mean()]).tolist()  # one sync
    return float(math.hypot(stats[0], stats[1]) + 0.3 * math.hypot(stats[2], stats[3]))


def image_colourfulness(img: Image.Image, max_pixels: int = REDUCED_PIXELS) -> float:
    """`colourfulness` of a PIL image (any mode, any size), statistics from a reduced copy.

    Images over `max_pixels` are measured on an evenly spaced sample of about that many pixels
    (nearest-neighbour resize), so a 100 MP scan costs a ~1 MP copy instead of full-size float64
    copies (~5 GB). Sampled, not averaged: box averaging smooths colour detail finer than the
    step and biases the spread low (13% low on bench_memory's 100 MP scan; the sample: 0.1%).
    Alpha is ignored, as `img.convert("RGB")` ignores it."""
    scale = math.sqrt(max_pixels / max(1, img.width * img.height))
    if scale < 1.0:
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        img = img.resize(size, Image.Resampling.NEAREST)
    return colourfulness(np.asarray(img.convert("RGB")))


def colourfulness_gap(pred: np.ndarray, truth: np.ndarray) -> float:
    """colourfulness(pred) - colourfulness(truth): negative means washed out (sepia drift)."""
    return colourfulness(pred) - colourfulness(truth)
