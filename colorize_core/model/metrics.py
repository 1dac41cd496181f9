"""Image quality metrics on uint8 RGB arrays (H, W, 3): PSNR, SSIM, colourfulness and its gap;
colourfulness of a PIL image of any size, from a reduced copy (`image_colourfulness`); and chroma
accuracy in CIE Lab: Zhang et al.'s (2016) AuC of the per-pixel ab-error curve (`chroma_auc`) and
the mean ab error along the image border versus the interior (`border_error`).

Colourfulness is Hasler and Suesstrunk's (2003) M = sigma_rgyb + 0.3 * mu_rgyb on the 0-255
scale: 0 for a gray image, ~15 "slightly", ~33 "moderately", ~59 "quite", ~82+ "highly" colourful.
It tracks the L2 loss's known drift toward sepia: a model that averages colours scores low.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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


# --- Chroma accuracy in CIE Lab: AuC of the per-pixel ab-error curve, and the border error ---
#
# The model works in YUV, but these scores convert both images from sRGB to CIE Lab (D65) and
# measure chroma error as the Euclidean distance in the a*b* plane, as Zhang, Isola and Efros
# (2016, "Colorful Image Colorization", ECCV) do, so our AuC is on the same scale as theirs.

# Thresholds 0, 1, ..., AUC_MAX_THRESHOLD on the ab scale (Zhang et al. sweep 0 to 150).
AUC_MAX_THRESHOLD = 150
# Width in pixels of the band along the image edges that `border_error` compares with the rest.
BORDER_BAND = 8
# The chroma scores convert row strips of about this many pixels at a time (float64 work arrays
# of a few MB each), so a 100 MP photo costs the same working memory as a 1 MP one.
CHROMA_STRIP_PIXELS = 1 << 18

# sRGB (IEC 61966-2-1) primaries to CIE XYZ, D65; each row divided by its sum, i.e. by the D65
# white (Xn, Yn, Zn) = (0.95047, 1.0, 1.08883) those rows add up to, so that white is exactly
# (1, 1, 1) and every gray (R = G = B) has a* = b* = 0 up to float rounding.
_XYZ_FROM_SRGB = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ]
)
_XYZN_FROM_SRGB = _XYZ_FROM_SRGB / _XYZ_FROM_SRGB.sum(axis=1, keepdims=True)


def _srgb_decode(v: np.ndarray) -> np.ndarray:
    """sRGB-encoded values in [0, 1] -> linear light (the exact piecewise sRGB curve)."""
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


# Linear light of each 8-bit sRGB code: decoding a strip is one table look-up.
_SRGB_LINEAR_LUT = _srgb_decode(np.arange(256, dtype=np.float64) / 255.0)
_EPS = (6 / 29) ** 3


def _lab_f(t: np.ndarray) -> np.ndarray:
    return np.where(t > _EPS, np.cbrt(t), t / (3 * (6 / 29) ** 2) + 4 / 29)


def _check_rgb(img: np.ndarray) -> None:
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected uint8 RGB (H, W, 3), got {img.dtype} {img.shape}")


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """uint8 sRGB (..., 3) -> float64 CIE L*a*b* (..., 3), D65 white (L* 0-100, a* b* ~ -128-127).

    White is (100, 0, 0), black (0, 0, 0), pure sRGB red ~(53.24, 80.09, 67.20). The whole array
    is converted at once: for big photos use the strip-wise scores below."""
    if rgb.dtype != np.uint8 or rgb.shape[-1] != 3:
        raise ValueError(f"expected uint8 RGB (..., 3), got {rgb.dtype} {rgb.shape}")
    f = _lab_f(_SRGB_LINEAR_LUT[rgb] @ _XYZN_FROM_SRGB.T)
    fx, fy, fz = f[..., 0], f[..., 1], f[..., 2]
    return np.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1)


def _ab(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint8 sRGB (..., 3) -> (a*, b*), skipping L*."""
    f = _lab_f(_SRGB_LINEAR_LUT[rgb] @ _XYZN_FROM_SRGB.T)
    return 500.0 * (f[..., 0] - f[..., 1]), 200.0 * (f[..., 1] - f[..., 2])


def ab_error(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per-pixel chroma error of uint8 RGB (H, W, 3) images: float64 (H, W) Euclidean distance
    between their a*b* (each image converted to Lab at its own L*). Whole image at once."""
    if pred.shape != truth.shape:
        raise ValueError(f"shape mismatch {pred.shape} vs {truth.shape}")
    _check_rgb(pred)
    _check_rgb(truth)
    pa, pb = _ab(pred)
    ta, tb = _ab(truth)
    return np.hypot(pa - ta, pb - tb)


def error_histogram(distances: np.ndarray, max_threshold: int = AUC_MAX_THRESHOLD) -> np.ndarray:
    """Counts (max_threshold + 2,) of ceil(distance), the last bin holding all above max_threshold.

    A pixel is within integer threshold t exactly when ceil(distance) <= t, so these counts give
    the whole accuracy curve exactly, and counts of strips (or of images) simply add."""
    k = np.minimum(np.ceil(np.asarray(distances, dtype=np.float64).ravel()), max_threshold + 1)
    return np.bincount(k.astype(np.int64), minlength=max_threshold + 2)


def accuracy_curve(histogram: np.ndarray) -> np.ndarray:
    """`error_histogram` counts -> the fraction of pixels within t, for t = 0, 1, ..., max."""
    n = int(histogram.sum())
    if n == 0:
        raise ValueError("no pixels")
    return np.cumsum(histogram[:-1]) / n


def auc_of_curve(curve: np.ndarray) -> float:
    """Area under the accuracy curve normalised to [0, 1]: its mean over the thresholds 0..max
    (1.0 when every pixel is exact; 0.0 when every pixel is off by more than the last one)."""
    return float(np.mean(curve))


@dataclass(frozen=True)
class BorderError:
    """Mean ab error in the band along the edges, in the rest of the image, and border / interior
    (1.0 when both are 0; inf when only the interior is exact)."""

    border: float
    interior: float
    ratio: float


@dataclass(frozen=True)
class ChromaScores:
    auc: float
    border: BorderError


def _ratio(border: float, interior: float) -> float:
    if interior > 0:
        return border / interior
    return 1.0 if border == 0 else math.inf


def chroma_scores(pred: np.ndarray, truth: np.ndarray, band: int = BORDER_BAND) -> ChromaScores:
    """`chroma_auc` and `border_error` of uint8 RGB (H, W, 3) images in one strip-wise pass.

    The band is narrowed to (min(H, W) - 1) // 2 on images too small to keep an interior; an
    image of 1 or 2 rows (or columns) has no band, and its border error is its mean error."""
    if pred.shape != truth.shape:
        raise ValueError(f"shape mismatch {pred.shape} vs {truth.shape}")
    _check_rgb(pred)
    _check_rgb(truth)
    h, w = truth.shape[:2]
    if h == 0 or w == 0:
        raise ValueError(f"empty image {truth.shape}")
    b = max(0, min(band, (min(h, w) - 1) // 2))
    col_in_band = np.zeros(w, dtype=bool)
    col_in_band[:b] = col_in_band[w - b :] = True
    hist = np.zeros(AUC_MAX_THRESHOLD + 2, dtype=np.int64)
    border_sum = interior_sum = 0.0
    border_n = 0
    rows = max(1, CHROMA_STRIP_PIXELS // w)
    for r0 in range(0, h, rows):
        r1 = min(h, r0 + rows)
        pa, pb = _ab(pred[r0:r1])
        ta, tb = _ab(truth[r0:r1])
        d = np.hypot(pa - ta, pb - tb)
        hist += error_histogram(d)
        r = np.arange(r0, r1)
        in_band = ((r < b) | (r >= h - b))[:, None] | col_in_band[None, :]
        band_d = d[in_band]
        border_sum += float(band_d.sum())
        border_n += band_d.size
        interior_sum += float(d[~in_band].sum())
    interior_n = h * w - border_n
    if border_n == 0:  # no band fits: the whole image is both
        border_mean = interior_mean = interior_sum / interior_n
    else:
        border_mean = border_sum / border_n
        interior_mean = interior_sum / interior_n
    auc = auc_of_curve(accuracy_curve(hist))
    return ChromaScores(auc, BorderError(border_mean, interior_mean, _ratio(border_mean, interior_mean)))


def chroma_auc(pred: np.ndarray, truth: np.ndarray) -> float:
    """Zhang et al.'s (2016) "raw accuracy" AuC of one uint8 RGB image pair, in [0, 1].

    Both images go to CIE Lab (sRGB, D65); d = ||ab_pred - ab_truth||_2 per pixel; the curve is
    acc(t) = fraction of pixels with d <= t for t = 0, 1, ..., 150; AuC = mean of acc(t) over those
    151 thresholds. Per image: over a set of images, evaluate averages the images' AuCs, each
    photo counting once whatever its size (Zhang et al. pool the pixels of their equal-size 256x256
    images, which is the same figure for equal sizes). No class rebalancing (their "raw" AuC).
    Computed strip-wise from a histogram of ceil(d), exact, with O(151) state."""
    return chroma_scores(pred, truth).auc


def border_error(pred: np.ndarray, truth: np.ndarray, band: int = BORDER_BAND) -> BorderError:
    """Mean ab error (as in `chroma_auc`) in the `band`-pixel band along the four image edges
    versus the interior's mean, and their ratio: well above 1 flags coloured fringes at borders."""
    return chroma_scores(pred, truth, band).border
