import pytest
import torch

from colorize_core.model.color import (
    U_MAX,
    V_MAX,
    rgb_to_y,
    rgb_to_yuv,
    unit_to_uv,
    uv_to_unit,
    yuv_to_rgb,
    yuv_to_rgb_in_gamut,
)


def test_round_trip_is_exact() -> None:
    rgb = torch.rand(4, 3, 17, 9, dtype=torch.float64)
    assert torch.allclose(yuv_to_rgb(rgb_to_yuv(rgb)), rgb, atol=1e-12)


def test_known_values_bt601() -> None:
    px = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.5, 0.5, 0.5]]).T.reshape(3, 3, 1)  # red, blue, gray
    yuv = rgb_to_yuv(px)[:, :, 0].T
    assert torch.allclose(yuv[0], torch.tensor([0.299, -0.14713, 0.615]), atol=1e-4)
    assert torch.allclose(yuv[1], torch.tensor([0.114, 0.436, -0.10001]), atol=1e-4)
    assert torch.allclose(yuv[2], torch.tensor([0.5, 0.0, 0.0]), atol=1e-6)


def test_uv_range_maps_onto_unit_interval() -> None:
    corners = torch.tensor([[-U_MAX, U_MAX], [-V_MAX, V_MAX]]).view(2, 2, 1)
    unit = uv_to_unit(corners)
    assert torch.allclose(unit, torch.tensor([[0.0, 1.0], [0.0, 1.0]]).view(2, 2, 1))
    uv = torch.randn(3, 2, 5, 5)
    assert torch.allclose(unit_to_uv(uv_to_unit(uv)), uv, atol=1e-6)


@pytest.mark.parametrize("seed", range(3))
def test_gamut_mapping_keeps_luma_and_range(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    y = torch.rand(2, 1, 16, 16, generator=g)
    uv = (torch.rand(2, 2, 16, 16, generator=g) - 0.5) * 2.0  # far outside the gamut for many pixels
    rgb = yuv_to_rgb_in_gamut(y, uv)
    assert rgb.min() >= 0.0 and rgb.max() <= 1.0
    assert torch.allclose(rgb_to_y(rgb), y, atol=1e-5)


def test_gamut_mapping_leaves_in_gamut_colours_alone() -> None:
    rgb = torch.rand(1, 3, 8, 8, dtype=torch.float64)
    yuv = rgb_to_yuv(rgb)
    assert torch.allclose(yuv_to_rgb_in_gamut(yuv[:, :1], yuv[:, 1:]), rgb, atol=1e-9)


def test_wrong_channel_count_is_refused() -> None:
    with pytest.raises(ValueError, match="3 channels"):
        rgb_to_yuv(torch.rand(1, 4, 2, 2))
