"""Bounded memory per pixel: the strip-by-strip colorizer gives the figures of the first version's
full-size float formula (within 1/255), for every luma precision, alpha kept; colourfulness from
a reduced copy stays close to the full-size figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from colorize_core.model import infer
from colorize_core.model.color import KB, KG, KR, yuv_to_rgb_in_gamut
from colorize_core.model.infer import Colorizer
from colorize_core.model.metrics import colourfulness, image_colourfulness
from colorize_core.storage.imageio import luma_and_alpha, luma_plane
from tests.conftest import make_photo

rng = np.random.default_rng(10)


@pytest.fixture(scope="module")
def colorizer(tiny_checkpoint: Path) -> Colorizer:
    return Colorizer.from_checkpoint(tiny_checkpoint, device="cpu", batch_size=2)


def _full_size_join(y: torch.Tensor, uv_small: torch.Tensor) -> torch.Tensor:
    """The first version: chroma upsampled to (H, W) in one go, joined in float, uint8 (3, H, W)."""
    uv_full = F.interpolate(uv_small[None], size=y.shape, mode="bilinear", align_corners=False)
    return (yuv_to_rgb_in_gamut(y[None, None], uv_full)[0] * 255.0).round_().to(torch.uint8)


def _old_luma_and_alpha(img: Image.Image) -> np.ndarray:
    """The first version of `luma_and_alpha`'s luma (float32 copies of everything)."""
    if img.mode.startswith("I;16") or img.mode == "I":
        y = np.asarray(img, dtype=np.float32) / 65535.0
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        y = arr / 255.0 if float(arr.max()) > 1.0 else arr
    elif img.mode in ("L", "1"):
        y = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    else:
        rgb = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
        y = rgb[..., 0] * KR + rgb[..., 1] * KG + rgb[..., 2] * KB
    return np.clip(y, 0.0, 1.0).astype(np.float32)


def _old_colorize(colorizer: Colorizer, img: Image.Image) -> np.ndarray:
    """The first version of `Colorizer.colorize` for one image without alpha: uint8 (H, W, 3)."""
    y = torch.from_numpy(_old_luma_and_alpha(img))
    s = colorizer.image_size
    small = F.interpolate(y[None, None], size=(s, s), mode="bilinear", antialias=True, align_corners=False)
    uv = colorizer.predict_uv(small.clamp(0.0, 1.0))[0]
    return _full_size_join(y, uv).permute(1, 2, 0).numpy()


def _assert_close(new: np.ndarray | torch.Tensor, old: np.ndarray | torch.Tensor) -> None:
    diff = np.abs(np.asarray(new, dtype=np.int16) - np.asarray(old, dtype=np.int16))
    assert diff.max() <= 1 and diff.mean() < 0.01, (diff.max(), diff.mean())


@pytest.mark.parametrize("h, w, strip_rows", [(37, 1001, None), (1003, 29, None), (1003, 29, 7), (64, 50, 1), (5, 3, 2)])
def test_strips_match_the_full_size_formula(monkeypatch: pytest.MonkeyPatch, h: int, w: int, strip_rows: int | None) -> None:
    if strip_rows is not None:  # strips of strip_rows rows, the last one shorter
        monkeypatch.setattr(infer, "STRIP_PIXELS_CPU", strip_rows * w)
    y = torch.rand(h, w)
    uv = (torch.rand(2, 32, 32) - 0.5) * 1.5  # strong chroma: many pixels out of gamut
    _assert_close(infer._join(y, uv), _full_size_join(y, uv))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(h=st.integers(1, 90), w=st.integers(1, 90), s=st.sampled_from([8, 16, 32]), strip_rows=st.integers(1, 40), seed=st.integers(0, 2**16))
def test_the_strip_wise_join_is_one_full_size_interpolation(h: int, w: int, s: int, strip_rows: int, seed: int) -> None:
    """Any size, any strip height (the last strip shorter, one row, taller than the image):
    within one level of upsampling the chroma to full size in one go and joining it there."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.rand(h, w, generator=gen)
    uv = (torch.rand(2, s, s, generator=gen) - 0.5) * 1.5  # strong chroma: many pixels out of gamut
    old = infer.STRIP_PIXELS_CPU
    infer.STRIP_PIXELS_CPU = strip_rows * w  # not monkeypatch: hypothesis reruns the body
    try:
        _assert_close(infer._join(y, uv), _full_size_join(y, uv))
    finally:
        infer.STRIP_PIXELS_CPU = old


def test_model_input_is_the_full_size_antialiased_resize(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(infer, "STRIP_PIXELS_CPU", 7 * 301)
    for h, w in [(301, 301), (1003, 29), (20, 9)]:
        y = (torch.rand(h, w) * 255).to(torch.uint8)
        full = F.interpolate(y[None, None].float() / 255.0, size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
        assert torch.allclose(infer._shrink(y, 32), full, atol=1e-6)


def test_output_is_channels_last_uint8_and_integer_luma_equals_float(colorizer: Colorizer) -> None:
    y8 = (torch.rand(45, 61) * 255).to(torch.uint8)
    (a,), (b,) = colorizer.colorize_planes([y8]), colorizer.colorize_planes([y8.float() / 255.0])
    assert a.dtype == torch.uint8 and a.shape == (3, 45, 61) and a.permute(1, 2, 0).is_contiguous()
    assert torch.equal(a, b)


@pytest.mark.parametrize("mode", ["L", "RGB", "I;16", "I", "F", "1", "CMYK"])
def test_luma_plane_keeps_precision_and_luma_and_alpha_is_unchanged(mode: str) -> None:
    src = make_photo(rng, 23, 31)
    if mode in ("I;16", "I"):
        img = Image.fromarray(rng.integers(0, 65536, (23, 31), dtype=np.uint16))
        img = img if mode == "I;16" else img.convert("I")
    elif mode == "F":
        img = Image.fromarray(rng.random((23, 31), dtype=np.float32) * 300.0)  # 0..255 floats, scaled and clipped
    else:
        img = src.convert(mode)
    y, alpha = luma_plane(img)
    expected = {"L": np.uint8, "1": np.uint8, "I;16": np.uint16, "I": np.uint16}.get(mode, np.float32)
    assert y.dtype == expected and y.shape == (23, 31) and alpha is None
    assert np.array_equal(luma_and_alpha(img)[0], _old_luma_and_alpha(img))


def test_colorize_matches_the_first_version_across_strips(colorizer: Colorizer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(infer, "STRIP_PIXELS_CPU", 1000)  # many strips, the last one shorter
    for img in (make_photo(rng, 203, 97).convert("L"), make_photo(rng, 61, 150), Image.fromarray(rng.integers(0, 65536, (77, 55), dtype=np.uint16))):
        (out,) = colorizer.colorize([img])
        assert out.mode == "RGB" and out.size == img.size
        _assert_close(np.asarray(out), _old_colorize(colorizer, img))


def test_alpha_is_kept(colorizer: Colorizer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(infer, "STRIP_PIXELS_CPU", 500)
    rgba = make_photo(rng, 41, 67)
    rgba.putalpha(Image.fromarray(rng.integers(0, 256, (41, 67), dtype=np.uint8)))
    for src in (rgba, rgba.convert("LA")):
        (out,) = colorizer.colorize([src])
        assert out.mode == "RGBA"
        assert np.array_equal(np.asarray(out.getchannel("A")), np.asarray(src.getchannel("A")))
        _assert_close(np.asarray(out.convert("RGB")), _old_colorize(colorizer, src.convert("RGB" if src.mode == "RGBA" else "L")))


def test_sixteen_bit_gray_levels_are_kept(colorizer: Colorizer) -> None:
    levels = rng.integers(0, 65536, (33, 47), dtype=np.uint16)
    (out,) = colorizer.colorize([Image.fromarray(levels)])
    got = np.asarray(out.convert("L"), dtype=np.float64)
    assert np.abs(got - levels / 65535.0 * 255.0).max() <= 1.0


def test_colourfulness_from_a_reduced_copy() -> None:
    img = make_photo(rng, 600, 900)  # smooth, colourful
    full = colourfulness(np.asarray(img))
    assert image_colourfulness(img) == full  # under the limit: measured as it is
    assert image_colourfulness(img, max_pixels=20_000) == pytest.approx(full, rel=0.01)  # a 1-in-27 sample
    rgba = img.copy()
    rgba.putalpha(Image.fromarray(rng.integers(0, 256, (600, 900), dtype=np.uint8)))
    assert image_colourfulness(rgba, max_pixels=20_000) == pytest.approx(image_colourfulness(img, max_pixels=20_000), abs=1e-9)
    assert image_colourfulness(img.convert("L"), max_pixels=20_000) == 0.0
