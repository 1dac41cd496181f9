import math

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from skimage.color import rgb2lab

from colorize_core.model import metrics
from colorize_core.model.metrics import (
    ab_error,
    accuracy_curve,
    auc_of_curve,
    border_error,
    chroma_auc,
    chroma_scores,
    colourfulness,
    colourfulness_gap,
    error_histogram,
    psnr,
    srgb_to_lab,
    ssim,
)

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


def test_srgb_to_lab_reference_values() -> None:
    # Reference values: sRGB, D65 (Lindbloom's calculator; skimage's rgb2lab agrees to ~0.005).
    cases = {
        (255, 255, 255): (100.0, 0.0, 0.0),
        (0, 0, 0): (0.0, 0.0, 0.0),
        (255, 0, 0): (53.2408, 80.0925, 67.2032),
        (0, 255, 0): (87.7347, -86.1827, 83.1793),
        (0, 0, 255): (32.2970, 79.1875, -107.8602),
        (128, 128, 128): (53.5850, 0.0, 0.0),
    }
    for rgb, lab in cases.items():
        assert srgb_to_lab(np.array(rgb, np.uint8)) == pytest.approx(lab, abs=2e-4), rgb
    a = rng.integers(0, 256, (50, 60, 3), dtype=np.uint8)
    assert np.abs(srgb_to_lab(a) - rgb2lab(a)).max() < 0.01
    grays = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)
    assert np.abs(srgb_to_lab(grays)[:, 1:]).max() < 1e-9  # any gray has a* = b* = 0


def test_accuracy_curve_and_auc_by_hand() -> None:
    # Distances 0, 10, 100, 200 (thresholds t = 0..150, "within" means d <= t):
    #   t = 0..9    -> 1/4 within (10 thresholds)
    #   t = 10..99  -> 2/4        (90 thresholds)
    #   t = 100..150 -> 3/4       (51 thresholds); 200 is never within.
    # AuC = (10 * 0.25 + 90 * 0.5 + 51 * 0.75) / 151 = 85.75 / 151 = 0.56788...
    curve = accuracy_curve(error_histogram(np.array([0.0, 10.0, 100.0, 200.0])))
    assert curve.shape == (151,)
    assert np.all(curve[:10] == 0.25) and np.all(curve[10:100] == 0.5) and np.all(curve[100:] == 0.75)
    assert auc_of_curve(curve) == pytest.approx(85.75 / 151, abs=1e-12)
    # A fractional distance counts from the next whole threshold: 10.5 is within at t = 11, not 10.
    curve = accuracy_curve(error_histogram(np.array([10.5])))
    assert curve[10] == 0.0 and curve[11] == 1.0
    assert auc_of_curve(curve) == pytest.approx(140 / 151)
    # Histograms of parts add up to the histogram of the whole (how strips are accumulated).
    d = rng.uniform(0, 200, 1000)
    assert np.array_equal(error_histogram(d[:300]) + error_histogram(d[300:]), error_histogram(d))


def test_chroma_auc_identity_far_off_and_brute_force() -> None:
    truth = rng.integers(0, 256, (24, 31, 3), dtype=np.uint8)
    assert chroma_auc(truth, truth) == 1.0
    green = np.full((4, 4, 3), (0, 255, 0), np.uint8)
    magenta = np.full((4, 4, 3), (255, 0, 255), np.uint8)  # ab distance ~233 > 150: never within
    assert chroma_auc(magenta, green) == 0.0
    pred = np.clip(truth.astype(int) + rng.integers(-60, 60, truth.shape), 0, 255).astype(np.uint8)
    d = np.hypot(*(rgb2lab(pred)[..., 1:] - rgb2lab(truth)[..., 1:]).transpose(2, 0, 1))
    brute = np.mean([np.mean(d <= t) for t in range(151)])
    assert chroma_auc(pred, truth) == pytest.approx(brute, abs=2e-3)
    assert np.abs(ab_error(pred, truth) - d).max() < 0.02
    gray = np.repeat(truth.mean(axis=2, keepdims=True).round().astype(np.uint8), 3, axis=2)
    assert 0.0 < chroma_auc(gray, truth) < 1.0


def test_border_error_band_only_and_uniform() -> None:
    h, w, band = 40, 56, 8
    truth = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    pred = truth.copy()
    pred[:band] = pred[-band:] = (255, 0, 255)
    pred[:, :band] = pred[:, -band:] = (255, 0, 255)
    e = border_error(pred, truth, band=band)
    assert e.interior == 0.0 and e.border > 10 and e.ratio == math.inf
    band_mask = np.ones((h, w), bool)
    band_mask[band:-band, band:-band] = False
    assert e.border == pytest.approx(ab_error(pred, truth)[band_mask].mean())
    # An error just inside the band (row 8) is interior.
    pred = truth.copy()
    pred[band, band:-band] = (0, 255, 0)
    e = border_error(pred, truth, band=band)
    assert e.border == 0.0 and e.interior > 0 and e.ratio == 0.0
    # The same error everywhere: ratio 1.
    e = border_error(np.full((h, w, 3), (200, 40, 40), np.uint8), np.full((h, w, 3), (40, 90, 200), np.uint8))
    assert e.border == pytest.approx(e.interior) and e.ratio == pytest.approx(1.0)
    assert border_error(truth, truth).ratio == 1.0


def test_chroma_scores_strips_small_images_and_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    truth = rng.integers(0, 256, (37, 23, 3), dtype=np.uint8)
    pred = rng.integers(0, 256, (37, 23, 3), dtype=np.uint8)
    whole = chroma_scores(pred, truth)
    monkeypatch.setattr(metrics, "CHROMA_STRIP_PIXELS", 50)  # strips of 2 rows, crossing the band
    strips = chroma_scores(pred, truth)
    assert strips.auc == pytest.approx(whole.auc, abs=1e-12)
    assert strips.border.border == pytest.approx(whole.border.border) and strips.border.interior == pytest.approx(whole.border.interior)
    # Too small for an 8 px band: it narrows (3x3 -> 1 px), or goes (2 rows: both are the mean).
    tiny_t, tiny_p = truth[:3, :3], pred[:3, :3]
    e = border_error(tiny_p, tiny_t)
    d = ab_error(tiny_p, tiny_t)
    assert e.interior == pytest.approx(d[1, 1]) and e.border == pytest.approx((d.sum() - d[1, 1]) / 8)
    e = border_error(pred[:2], truth[:2])
    assert e.border == e.interior == pytest.approx(ab_error(pred[:2], truth[:2]).mean()) and e.ratio == pytest.approx(1.0)
    with pytest.raises(ValueError):
        chroma_auc(pred, truth[:-1])
    with pytest.raises(ValueError):
        border_error(pred.astype(np.float32), truth.astype(np.float32))
