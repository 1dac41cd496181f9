"""The Colorizer keeps the input's gray levels, size, orientation and alpha, for every mode."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from colorize_core.model.checkpoint import load_model
from colorize_core.model.infer import Colorizer, cudnn_autotune
from colorize_core.storage.imageio import decode, luma_and_alpha
from tests.conftest import make_photo

rng = np.random.default_rng(99)


@pytest.fixture(scope="module")
def colorizer(tiny_checkpoint: Path) -> Colorizer:
    return Colorizer.from_checkpoint(tiny_checkpoint, device="cpu", batch_size=3)


def _gray_levels(img: Image.Image) -> np.ndarray:
    """What the input's gray level is, in 0-255 units (16-bit inputs scaled)."""
    y, _ = luma_and_alpha(img)
    return y * 255.0


def _assert_luma_kept(src: Image.Image, out: Image.Image) -> None:
    assert out.size == src.size
    got = np.asarray(out.convert("RGB").convert("L"), dtype=np.float64)
    diff = np.abs(got - _gray_levels(src))
    assert diff.max() <= 1.0, f"luma off by up to {diff.max():.2f}/255"


def _modes() -> dict[str, Image.Image]:
    rgb = make_photo(rng, 37, 53)  # odd sizes on purpose
    rgba = rgb.copy()
    rgba.putalpha(Image.fromarray(rng.integers(0, 256, (37, 53), dtype=np.uint8)))
    p_trans = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=32)
    p_trans.info["transparency"] = 0
    i16 = Image.fromarray(rng.integers(0, 65536, (29, 41), dtype=np.uint16))
    return {
        "L": rgb.convert("L"),
        "LA": rgba.convert("LA"),
        "RGB": rgb,
        "RGBA": rgba,
        "P": rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=64),
        "P+transparency": p_trans,
        "I;16": i16,
        "CMYK": rgb.convert("CMYK"),
        "1": rgb.convert("1"),
    }


@pytest.mark.parametrize("mode", list(_modes()))
def test_luma_preserved_for_every_mode(colorizer: Colorizer, mode: str) -> None:
    src = _modes()[mode]
    (out,) = colorizer.colorize([src])
    _assert_luma_kept(src, out)


def test_alpha_is_kept(colorizer: Colorizer) -> None:
    modes = _modes()
    for name in ("RGBA", "LA", "P+transparency"):
        src = modes[name]
        (out,) = colorizer.colorize([src])
        assert out.mode == "RGBA"
        expected = np.asarray(src.convert("RGBA").getchannel("A"))
        assert np.array_equal(np.asarray(out.getchannel("A")), expected)


def test_batches_of_mixed_sizes_and_aspect_ratios(colorizer: Colorizer) -> None:
    sizes = [(1, 1), (5, 300), (300, 5), (33, 33), (64, 17), (101, 77), (8, 8)]
    images = [make_photo(rng, h, w).convert("L") for w, h in sizes]
    outs = colorizer.colorize(images)
    assert len(outs) == len(images)
    for src, out in zip(images, outs):
        _assert_luma_kept(src, out)


def test_exif_orientation_is_honoured(colorizer: Colorizer) -> None:
    src = make_photo(rng, 24, 40).convert("L")  # 40 wide, 24 tall as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    buf = io.BytesIO()
    src.save(buf, format="JPEG", exif=exif, quality=95)
    img = decode(buf.getvalue(), name="rotated.jpg")
    assert img.size == (24, 40)  # upright: 24 wide, 40 tall
    (out,) = colorizer.colorize([img])
    assert out.size == (24, 40)
    _assert_luma_kept(img, out)


def test_batch_order_does_not_change_results(colorizer: Colorizer) -> None:
    images = [make_photo(rng, 30, 30) for _ in range(5)]
    together = colorizer.colorize(images)
    alone = [colorizer.colorize([im])[0] for im in images]
    for a, b in zip(together, alone):
        assert np.abs(np.asarray(a, int) - np.asarray(b, int)).max() <= 1


def test_fast_path_matches_the_plain_path(tiny_checkpoint: Path) -> None:
    from colorize_core.model.infer import PLAIN, InferenceOptions

    images = [make_photo(rng, 45, 61).convert("L") for _ in range(5)]
    plain = Colorizer(load_model(tiny_checkpoint), device="cpu", batch_size=4, options=PLAIN)
    fast = Colorizer(load_model(tiny_checkpoint), device="cpu", batch_size=4, options=InferenceOptions(mixed_precision=True))
    gray = torch.rand(3, 1, 32, 32)
    uv_plain, uv_fast = plain.predict_uv(gray), fast.predict_uv(gray)
    assert uv_fast.shape == uv_plain.shape == (3, 2, 32, 32)  # padding removed again
    assert (uv_fast - uv_plain).abs().max() < 0.02  # bf16 rounding, in YUV units (range ~1.2)
    for a, b in zip(plain.colorize(images), fast.colorize(images)):
        diff = np.abs(np.asarray(a, int) - np.asarray(b, int))
        assert diff.mean() < 1.5 and diff.max() <= 12
        _assert_luma_kept(a, b)  # both keep the input's gray levels


@pytest.mark.slow
def test_compiled_path_matches_eager(tiny_checkpoint: Path) -> None:
    from colorize_core.model.infer import PLAIN, InferenceOptions

    gray = torch.rand(2, 1, 32, 32)
    eager = Colorizer(load_model(tiny_checkpoint), device="cpu", batch_size=2, options=PLAIN)
    compiled = Colorizer(load_model(tiny_checkpoint), device="cpu", batch_size=2, options=InferenceOptions(mixed_precision=False, compile=True))
    assert torch.allclose(eager.predict_uv(gray), compiled.predict_uv(gray), atol=1e-4)


def test_batch_size_defaults_by_device(tiny_checkpoint: Path) -> None:
    from colorize_core.model.device import inference_batch_size

    assert Colorizer(load_model(tiny_checkpoint), device="cpu").batch_size == 8
    assert inference_batch_size(torch.device("cuda")) == 64 and inference_batch_size(torch.device("cuda"), 16) == 16
    with pytest.raises(ValueError, match="positive"):
        inference_batch_size(torch.device("cpu"), 0)


def test_cudnn_autotuning_is_scoped_to_a_forward() -> None:
    """A Colorizer on CUDA tunes cuDNN for its own forwards, and leaves the process's flag as
    it found it (training in the same process, or another library, keeps its own)."""
    flags = torch.backends.cudnn
    before = flags.benchmark
    try:
        flags.benchmark = False
        with cudnn_autotune(True):
            assert flags.benchmark is True
        assert flags.benchmark is False
        with cudnn_autotune(False):
            assert flags.benchmark is False
        flags.benchmark = True  # set by the process: left alone
        with cudnn_autotune(True):
            pass
        assert flags.benchmark is True
        flags.benchmark = False
        with pytest.raises(RuntimeError), cudnn_autotune(True):
            raise RuntimeError("a failed forward")
        assert flags.benchmark is False  # restored on failure too
    finally:
        flags.benchmark = before
