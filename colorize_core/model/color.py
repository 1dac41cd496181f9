"""Colour spaces: RGB <-> YUV (BT.601) on batched float tensors, and the UV scaling of the head.

Tensors are (..., 3, H, W) with RGB in [0, 1]. Y is in [0, 1]; U in [-U_MAX, U_MAX] and V in
[-V_MAX, V_MAX]. The inverse matrix is the exact inverse of the forward one (computed in float64),
so a round trip is exact up to float rounding.
"""

from __future__ import annotations

import torch

from colorize_core.bt601 import KB, KG, KR, U_MAX, V_MAX

_RGB_TO_YUV64 = torch.tensor(
    [
        [KR, KG, KB],
        [-U_MAX * KR / (1 - KB), -U_MAX * KG / (1 - KB), U_MAX],
        [V_MAX, -V_MAX * KG / (1 - KR), -V_MAX * KB / (1 - KR)],
    ],
    dtype=torch.float64,
)
_YUV_TO_RGB64 = torch.linalg.inv(_RGB_TO_YUV64)


def _apply(matrix64: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    if x.shape[-3] != 3:
        raise ValueError(f"expected 3 channels at dim -3, got shape {tuple(x.shape)}")
    m = matrix64.to(device=x.device, dtype=x.dtype if x.is_floating_point() else torch.float32)
    return torch.einsum("ij,...jhw->...ihw", m, x)


def rgb_to_yuv(rgb: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) RGB in [0, 1] -> (..., 3, H, W) YUV."""
    return _apply(_RGB_TO_YUV64, rgb)


def yuv_to_rgb(yuv: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) YUV -> (..., 3, H, W) RGB, not clamped (see `yuv_to_rgb_in_gamut`)."""
    return _apply(_YUV_TO_RGB64, yuv)


def rgb_to_y(rgb: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) RGB -> (..., 1, H, W) luma."""
    return rgb_to_yuv(rgb)[..., :1, :, :]


def uv_to_unit(uv: torch.Tensor) -> torch.Tensor:
    """(..., 2, H, W) UV -> [0, 1], the range of the model's sigmoid head."""
    scale = torch.tensor([2 * U_MAX, 2 * V_MAX], device=uv.device, dtype=uv.dtype)
    return uv / scale.view(2, 1, 1) + 0.5


def unit_to_uv(unit: torch.Tensor) -> torch.Tensor:
    """Inverse of `uv_to_unit`."""
    scale = torch.tensor([2 * U_MAX, 2 * V_MAX], device=unit.device, dtype=unit.dtype)
    return (unit - 0.5) * scale.view(2, 1, 1)


def yuv_to_rgb_in_gamut(y: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Join luma (..., 1, H, W) and chroma (..., 2, H, W) into RGB in [0, 1] with Y unchanged.

    Clamping R, G, B independently would change the luminance of out-of-gamut pixels. Instead the
    chroma of each pixel is scaled toward gray by the largest factor t in [0, 1] that keeps every
    channel in range; t = 0 (pure gray) always fits because Y is in [0, 1], so Y is preserved.
    """
    y = y.clamp(0.0, 1.0)
    zero_y = torch.zeros_like(y)
    delta = yuv_to_rgb(torch.cat([zero_y, uv], dim=-3))  # the chroma's contribution to R, G, B
    eps = 1e-12
    room_up = (1.0 - y) / delta.clamp(min=eps)  # limit where a channel would exceed 1
    room_down = y / (-delta).clamp(min=eps)  # limit where a channel would go below 0
    limit = torch.where(delta > 0, room_up, torch.where(delta < 0, room_down, torch.ones_like(delta)))
    t = limit.amin(dim=-3, keepdim=True).clamp(0.0, 1.0)
    return (y + t * delta).clamp(0.0, 1.0)
