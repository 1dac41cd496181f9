import math

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from colorize_core.model.metrics import colourfulness, colourfulness_gap, psnr, ssim

rng = np.random.default_rng(7)


def test_psnr_known_value_and_identity() -> None:
    a = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    assert psnr(a, a) == math.inf
    b = a.astype(np.int16)
    b[..., 0] = np.where(b[..., 0] < 128, b[..., 0] + 10, b[..., 0] - 10)  # every R off by exactly 10
    expected = 10 * math.log10(255**2 / (100 / 3))
    assert psnr(b.astype(np.uint8), a) == pytest.approx(expected, rel=1e-9)


def test_ssim_matches_the_reference_implementation() -> None:
    a = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-50, 50, a.shape), 0, 255).astype(np.uint8)
    ref = structural_similarity(a, b, channel_axis=2, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)
    assert ssim(a, b) == pytest.approx(ref, abs=1e-6)
    assert ssim(a, a) == pytest.approx(1.0)


def test_colourfulness_zero_for_gray_and_orders_saturation() -> None:
    gray = np.repeat(rng.integers(0, 256, (16, 16, 1), dtype=np.uint8), 3, axis=2)
    assert colourfulness(gray) == 0.0
    dull = np.full((16, 16, 3), (140, 120, 110), np.uint8)
    vivid = np.zeros((16, 16, 3), np.uint8)
    vivid[:, :8] = (255, 0, 0)
    vivid[:, 8:] = (0, 0, 255)
    assert colourfulness(vivid) > colourfulness(dull) > 0
    assert colourfulness_gap(dull, vivid) < 0


def test_bad_arrays_are_refused() -> None:
    with pytest.raises(ValueError):
        psnr(np.zeros((4, 4, 3), np.float32), np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError):
        ssim(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5, 3), np.uint8))
