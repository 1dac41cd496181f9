"""Dahl's colorization models: the residual encoder (the seed's final model) and the hypercolumn
baseline, one frozen config dataclass, and `build_model`.

Both take gray (N, 1, H, W) in [0, 1], H and W multiples of 8, and return UV scaled to [0, 1]
(N, 2, H, W) through a sigmoid; `colorize_core.model.color.unit_to_uv` maps it back to YUV chroma.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from colorize_core.model import chroma_bins
from colorize_core.model.backbone import TAP_CHANNELS, VGG16Taps
from colorize_core.model.color import uv_to_unit
from colorize_core.model.config import ModelConfig


def edge_pad(x: torch.Tensor, p: int) -> torch.Tensor:
    """Repeat the edge rows and columns `p` times (what padding_mode="replicate" does), from
    slices and a concatenation: torch.compile's backward of replication_pad2d fails on
    channels-last strides (torch 2.14), and these ops every backend handles."""
    n, c, h, w = x.shape
    x = torch.cat([x[:, :, :1].expand(n, c, p, w), x, x[:, :, -1:].expand(n, c, p, w)], dim=2)
    return torch.cat([x[..., :1].expand(n, c, h + 2 * p, p), x, x[..., -1:].expand(n, c, h + 2 * p, p)], dim=3)


class Conv2d(nn.Conv2d):
    """nn.Conv2d whose replicate padding is `edge_pad` (same weights, same state-dict keys)."""

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if self.padding_mode == "replicate" and isinstance(self.padding, tuple) and len(set(self.padding)) == 1 and self.padding[0] > 0:
            return F.conv2d(edge_pad(input, self.padding[0]), weight, bias, self.stride, 0, self.dilation, self.groups)
        return super()._conv_forward(input, weight, bias)


class ConvBNReLU(nn.Sequential):
    """Conv without bias, then batch norm (which supplies the shift), then ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, padding: str = "zeros") -> None:
        super().__init__(
            Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False, padding_mode=padding),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


def _check_size(gray: torch.Tensor) -> None:
    if gray.ndim != 4 or gray.shape[1] != 1:
        raise ValueError(f"expected gray input (N, 1, H, W), got {tuple(gray.shape)}")
    if gray.shape[-1] % 8 or gray.shape[-2] % 8:
        raise ValueError(f"height and width must be multiples of 8, got {tuple(gray.shape[-2:])}")


def _up2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


class ResidualEncoder(nn.Module):
    """Dahl's residual encoder: VGG16 taps merged coarse-to-fine by upsample-and-add.

    With `classification=True` the decoder stops at half resolution and predicts logits over
    the chroma bins (chroma_bins.py) there: in training mode `forward` returns them, in eval
    mode their annealed mean, upsampled and scaled as the regression head's output, so
    inference treats both heads alike."""

    def __init__(self, backbone: VGG16Taps, *, classification: bool = False, padding: str = "zeros") -> None:
        super().__init__()
        c1, c2, c3, c4 = TAP_CHANNELS
        self.backbone = backbone
        self.classification = classification
        self.bn4, self.bn3, self.bn2 = (nn.BatchNorm2d(c) for c in (c4, c3, c2))
        self.reduce4 = ConvBNReLU(c4, c3, kernel=1)  # 512 -> 256
        self.fuse3 = ConvBNReLU(c3, c2, padding=padding)  # 256 -> 128
        self.fuse2 = ConvBNReLU(c2, c1, padding=padding)  # 128 -> 64
        if classification:
            self.register_buffer("centers", chroma_bins.bin_centers(), persistent=False)
            self.classify = nn.Conv2d(c1, self.centers.shape[0], 1)  # (N, Q, H/2, W/2) logits
            return
        self.bn1 = nn.BatchNorm2d(c1)
        self.bn_in = nn.BatchNorm2d(3)
        self.fuse1 = ConvBNReLU(c1, 3, padding=padding)  # 64 -> 3
        self.refine = ConvBNReLU(3, 3, padding=padding)
        # The head keeps a bias (no BN): the sigmoid needs a free offset, and BN right before it
        # would pin the output's batch statistics.
        self.head = Conv2d(3, 2, 3, padding=1, padding_mode=padding)

    def forward(self, gray: torch.Tensor) -> torch.Tensor:
        _check_size(gray)
        t1, t2, t3, t4 = self.backbone(gray)  # 64@H, 128@H/2, 256@H/4, 512@H/8
        x = self.reduce4(self.bn4(t4))  # (N, 256, H/8, W/8)
        x = self.fuse3(_up2(x) + self.bn3(t3))  # (N, 128, H/4, W/4)
        x = self.fuse2(_up2(x) + self.bn2(t2))  # (N, 64, H/2, W/2)
        if self.classification:
            logits = self.classify(x)
            if self.training:
                return logits
            uv = _up2(chroma_bins.annealed_mean(logits, self.centers))
            return uv_to_unit(uv).clamp(0.0, 1.0)  # (N, 2, H, W), as the sigmoid head's
        x = self.fuse1(_up2(x) + self.bn1(t1))  # (N, 3, H, W)
        x = self.refine(x + self.bn_in(gray.expand(-1, 3, -1, -1)))  # (N, 3, H, W)
        return torch.sigmoid(self.head(x))  # (N, 2, H, W) UV in [0, 1]


class Hypercolumn(nn.Module):
    """Dahl's first model: every tap upsampled to full size and concatenated (963 channels)."""

    def __init__(self, backbone: VGG16Taps, *, padding: str = "zeros") -> None:
        super().__init__()
        self.backbone = backbone
        cin = sum(TAP_CHANNELS) + 3  # 963
        self.conv1 = ConvBNReLU(cin, 128, padding=padding)
        self.conv2 = ConvBNReLU(128, 64, padding=padding)
        self.head = Conv2d(64, 2, 3, padding=1, padding_mode=padding)

    def forward(self, gray: torch.Tensor) -> torch.Tensor:
        _check_size(gray)
        size = gray.shape[-2:]
        taps = self.backbone(gray)
        ups = [t if t.shape[-2:] == size else F.interpolate(t, size=size, mode="bilinear", align_corners=False) for t in taps]
        x = torch.cat([*ups, gray.expand(-1, 3, -1, -1)], dim=1)  # (N, 963, H, W)
        x = self.conv2(self.conv1(x))  # (N, 64, H, W)
        return torch.sigmoid(self.head(x))  # (N, 2, H, W) UV in [0, 1]


def build_model(config: ModelConfig, *, backbone_weights: str | os.PathLike[str] = "none") -> nn.Module:
    """Build the model a config names, with backbone weights "imagenet", "none" or a file path."""
    backbone = VGG16Taps(weights=backbone_weights, trainable=config.train_backbone)
    if config.arch == "residual_encoder":
        model: nn.Module = ResidualEncoder(backbone, classification=config.head == "classification", padding=config.padding)
    else:
        model = Hypercolumn(backbone, padding=config.padding)
    model.config = config  # type: ignore[assignment]  # travels with the model into checkpoints
    return model


def head_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The model's own layers, without the backbone."""
    return [p for name, p in model.named_parameters() if not name.startswith("backbone.")]
