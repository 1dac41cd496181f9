"""The losses: the seed's blurred Euclidean loss on UV (plain MSE plus MSE after 3- and 5-pixel
Gaussian blurs), and the classification head's rebalanced cross-entropy over chroma bins.

The blur is depthwise (one kernel per channel, groups=C), so it never mixes U into V: an error
only in U gives no gradient on V.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from colorize_core.model import chroma_bins
from colorize_core.model.color import unit_to_uv

BLUR_SIZES = (3, 5)


def gaussian_kernel(size: int, sigma: float | None = None) -> torch.Tensor:
    """A normalised (size, size) Gaussian; sigma defaults to OpenCV's rule for that size."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"kernel size must be odd and positive, got {size}")
    if sigma is None:
        sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    k = torch.outer(g, g)
    return (k / k.sum()).float()


def depthwise_blur(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Blur each channel of (N, C, H, W) on its own, with replicate padding (no dark border)."""
    c = x.shape[1]
    k = kernel.to(device=x.device, dtype=x.dtype).expand(c, 1, *kernel.shape)
    pad = kernel.shape[-1] // 2
    return F.conv2d(F.pad(x, (pad, pad, pad, pad), mode="replicate"), k, groups=c)


class BlurredUVLoss(nn.Module):
    """mean(MSE(p, t), MSE(blur3 p, blur3 t), MSE(blur5 p, blur5 t)) on (N, 2, H, W) UV."""

    def __init__(self, sizes: tuple[int, ...] = BLUR_SIZES) -> None:
        super().__init__()
        for s in sizes:
            self.register_buffer(f"k{s}", gaussian_kernel(s), persistent=False)
        self.sizes = sizes

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if pred.shape != target.shape or pred.shape[1] != 2:
            raise ValueError(f"expected matching (N, 2, H, W) tensors, got {tuple(pred.shape)} and {tuple(target.shape)}")
        pred, target = pred.float(), target.float()  # loss in fp32 even under autocast
        terms = [F.mse_loss(pred, target)]
        for s in self.sizes:
            k = getattr(self, f"k{s}")
            terms.append(F.mse_loss(depthwise_blur(pred, k), depthwise_blur(target, k)))
        return torch.stack(terms).mean()


class ChromaClassLoss(nn.Module):
    """Zhang et al.'s rebalanced multinomial cross-entropy: soft-encoded targets over the
    chroma bins, each pixel weighted by its nearest bin's rebalancing weight.

    Logits (N, Q, h, w) are at the decoder's resolution (half the input's); the target (N, 2,
    H, W) is the regression head's, UV scaled to [0, 1], and is averaged down to (h, w)."""

    def __init__(self, weights: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("centers", chroma_bins.bin_centers(), persistent=False)
        self.register_buffer("weights", weights.float(), persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        uv = unit_to_uv(target.float())
        if uv.shape[-2:] != logits.shape[-2:]:
            uv = F.adaptive_avg_pool2d(uv, logits.shape[-2:])
        soft = chroma_bins.soft_encode(uv, self.centers)
        pixel_weight = self.weights[chroma_bins.nearest_bin(uv, self.centers)]  # (N, h, w)
        log_probs = F.log_softmax(logits.float(), dim=1)
        return -(pixel_weight * (soft * log_probs).sum(dim=1)).mean()
