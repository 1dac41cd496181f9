"""Chroma as classes, after Zhang, Isola and Efros, "Colorful Image Colorization" (ECCV 2016),
on this project's YUV chroma instead of Lab's ab.

- Bins: a square grid of `BIN_STEP` over the UV plane, kept where the cell's centre is a colour
  some gray level can have (in the RGB gamut for at least one Y). Zhang et al.'s grid of 10 on
  ab keeps 313 bins; ours keeps about as many (`bin_centers().shape[0]`).
- Soft targets: each pixel's chroma spread over its 5 nearest bins with a Gaussian of
  `SIGMA` (half a bin, as their sigma 5 on a grid of 10).
- Rebalancing: a pixel's loss weight is w(q*) for its nearest bin q*, w = ((1 - lambda) p~ +
  lambda / Q)^-1 normalised so the expected weight under p~ is 1; p~ is the empirical bin
  distribution smoothed by the same Gaussian; lambda 0.5. Rare, saturated colours then count
  as much as the common desaturated ones an L2 loss averages everything into (sepia).
- Decoding: the annealed mean, softmax(logits / T) over the bin centres, T 0.38: between the
  mode (vivid, patchy) and the mean (smooth, sepia).
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

from colorize_core.model.color import U_MAX, V_MAX, yuv_to_rgb

BIN_STEP = 0.05  # UV units (U spans 0.872, V 1.23): 301 in-gamut bins, near their 313
SIGMA = BIN_STEP / 2
NEIGHBOURS = 5
REBALANCE_LAMBDA = 0.5
TEMPERATURE = 0.38


@lru_cache(maxsize=1)
def _centers() -> torch.Tensor:
    us = torch.arange(-U_MAX + BIN_STEP / 2, U_MAX, BIN_STEP, dtype=torch.float64)
    vs = torch.arange(-V_MAX + BIN_STEP / 2, V_MAX, BIN_STEP, dtype=torch.float64)
    grid = torch.cartesian_prod(us, vs)  # (G, 2)
    ys = torch.linspace(0.0, 1.0, 257, dtype=torch.float64)
    yuv = torch.stack(torch.broadcast_tensors(ys[None, :], grid[:, :1], grid[:, 1:]), dim=1)  # (G, 3, 257)
    rgb = yuv_to_rgb(yuv[..., None])[..., 0]  # (G, 3, 257)
    in_gamut = ((rgb >= 0.0) & (rgb <= 1.0)).all(dim=1).any(dim=1)
    return grid[in_gamut].float()


def bin_centers() -> torch.Tensor:
    """(Q, 2) the UV centres of the in-gamut bins, in a fixed order (the classes' order)."""
    return _centers().clone()


def _nearest(uv: torch.Tensor, centers: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 2, H, W) UV -> squared distances and indices of the k nearest centres, (N, H, W, k)."""
    flat = uv.permute(0, 2, 3, 1).reshape(-1, 2).float()
    d2 = torch.cdist(flat, centers.to(flat.device)).square()  # (P, Q)
    dist, idx = d2.topk(k, dim=1, largest=False)
    n, _, h, w = uv.shape
    return dist.view(n, h, w, k), idx.view(n, h, w, k)


def soft_encode(uv: torch.Tensor, centers: torch.Tensor, k: int = NEIGHBOURS, sigma: float = SIGMA) -> torch.Tensor:
    """(N, 2, H, W) UV -> (N, Q, H, W) soft targets: Gaussian weights on the k nearest bins, summing to 1."""
    d2, idx = _nearest(uv, centers, k)
    weights = torch.exp(-d2 / (2 * sigma**2))
    weights = weights / weights.sum(dim=-1, keepdim=True)
    n, h, w, _ = idx.shape
    out = torch.zeros(n, h, w, centers.shape[0], device=uv.device, dtype=torch.float32)
    out.scatter_(-1, idx, weights.float())
    return out.permute(0, 3, 1, 2)


def nearest_bin(uv: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """(N, 2, H, W) UV -> (N, H, W) index of the nearest bin."""
    return _nearest(uv, centers, 1)[1][..., 0]


def bin_histogram(uv: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """Counts of pixels per nearest bin, (Q,): what the prior is estimated from."""
    return torch.bincount(nearest_bin(uv, centers).reshape(-1).cpu(), minlength=centers.shape[0]).double()


def rebalance_weights(counts: torch.Tensor, centers: torch.Tensor, lam: float = REBALANCE_LAMBDA, sigma: float = SIGMA) -> torch.Tensor:
    """Per-bin loss weights (Q,) from bin counts: smoothed prior mixed with uniform, inverted,
    normalised so that sum(prior * w) == 1."""
    q = centers.shape[0]
    prior = counts.double() / counts.sum().clamp_min(1.0)
    c = centers.double()
    kernel = torch.exp(-torch.cdist(c, c).square() / (2 * sigma**2))
    smoothed = kernel @ prior
    smoothed = smoothed / smoothed.sum()
    w = 1.0 / ((1.0 - lam) * smoothed + lam / q)
    return (w / (smoothed * w).sum()).float()


def annealed_mean(logits: torch.Tensor, centers: torch.Tensor, temperature: float = TEMPERATURE) -> torch.Tensor:
    """(N, Q, H, W) logits -> (N, 2, H, W) UV: the mean of the bin centres under softmax(logits / T)."""
    probs = F.softmax(logits.float() / temperature, dim=1)
    return torch.einsum("nqhw,qc->nchw", probs, centers.to(probs.device))
