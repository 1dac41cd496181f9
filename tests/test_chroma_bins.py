"""The classification head (Zhang et al. 2016 on YUV chroma): bins, soft encoding, rebalancing,
annealed-mean decoding, the head's two modes, and a training run end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from colorize_core.model import chroma_bins
from colorize_core.model.checkpoint import load_checkpoint, model_from_checkpoint
from colorize_core.model.color import rgb_to_yuv, yuv_to_rgb
from colorize_core.model.infer import Colorizer
from colorize_core.model.loss import ChromaClassLoss
from colorize_core.model.models import ModelConfig, build_model
from colorize_core.training.train import TrainConfig, gray_and_target, train

# Known colours as (R, G, B) in [0, 1]: a red, a green, a blue, skin, sky, and a near-gray.
KNOWN = torch.tensor([[0.8, 0.1, 0.1], [0.2, 0.7, 0.2], [0.1, 0.2, 0.8], [0.87, 0.68, 0.55], [0.45, 0.65, 0.9], [0.5, 0.5, 0.52]])


def _uv(rgb: torch.Tensor) -> torch.Tensor:
    return rgb_to_yuv(rgb.view(-1, 3, 1, 1))[:, 1:]  # (N, 2, 1, 1)


def test_bins_cover_the_gamut_and_nothing_outside_it() -> None:
    centers = chroma_bins.bin_centers()
    assert 280 <= centers.shape[0] <= 330  # about Zhang et al.'s 313
    # every known colour's chroma is within half a bin diagonal of some centre
    d = torch.cdist(_uv(KNOWN).view(-1, 2), centers).min(dim=1).values
    assert (d <= chroma_bins.BIN_STEP * 0.71).all()
    # and every centre is a colour some gray level can have
    ys = torch.linspace(0, 1, 257)
    for u, v in centers[:: 17]:
        rgb = yuv_to_rgb(torch.stack([ys, u.expand(257), v.expand(257)]).view(3, 257, 1))
        assert ((rgb >= 0) & (rgb <= 1)).all(dim=0).any()


def test_soft_encoding_sums_to_one_on_five_bins_and_round_trips_known_colours() -> None:
    centers = chroma_bins.bin_centers()
    uv = _uv(KNOWN)
    soft = chroma_bins.soft_encode(uv, centers)
    assert soft.shape == (len(KNOWN), centers.shape[0], 1, 1)
    assert torch.allclose(soft.sum(dim=1), torch.ones(len(KNOWN), 1, 1))
    assert ((soft > 0).sum(dim=1) == chroma_bins.NEIGHBOURS).all()
    # decoding the soft target (its log as logits, T = 1: the plain mean) gives the colour back
    back = chroma_bins.annealed_mean(torch.log(soft.clamp_min(1e-30)), centers, temperature=1.0)
    assert (back - uv).abs().max() < chroma_bins.BIN_STEP / 4
    # annealing sharpens towards the nearest bin, still near the colour
    annealed = chroma_bins.annealed_mean(torch.log(soft.clamp_min(1e-30)), centers)
    assert (annealed - uv).abs().max() < chroma_bins.BIN_STEP / 2


def test_annealed_mean_lies_between_the_mean_and_the_mode() -> None:
    centers = chroma_bins.bin_centers()
    a, b = chroma_bins.nearest_bin(_uv(KNOWN[:2]), centers).view(-1).tolist()
    logits = torch.full((1, centers.shape[0], 1, 1), -30.0)
    logits[0, a], logits[0, b] = 0.0, -0.5  # bin a likelier than bin b
    mean = chroma_bins.annealed_mean(logits, centers, temperature=1.0).view(2)
    annealed = chroma_bins.annealed_mean(logits, centers).view(2)
    mode = centers[a]
    assert (annealed - mode).norm() < (mean - mode).norm()
    assert (annealed - mode).norm() > 1e-4


def test_rebalancing_weights_have_expectation_one_and_favour_rare_colours() -> None:
    centers = chroma_bins.bin_centers()
    counts = torch.ones(centers.shape[0], dtype=torch.float64)
    gray_bin = chroma_bins.nearest_bin(torch.zeros(1, 2, 1, 1), centers).item()
    counts[gray_bin] = 10_000.0  # archives are mostly desaturated
    w = chroma_bins.rebalance_weights(counts, centers).double()
    prior = counts / counts.sum()
    c = centers.double()
    smoothed = torch.exp(-torch.cdist(c, c).square() / (2 * chroma_bins.SIGMA**2)) @ prior
    smoothed = smoothed / smoothed.sum()
    assert float((smoothed * w).sum()) == pytest.approx(1.0, abs=1e-6)
    assert w[gray_bin] < w.median() / 3
    # lambda 1: the uniform distribution alone, every weight 1
    assert torch.allclose(chroma_bins.rebalance_weights(counts, centers, lam=1.0), torch.ones(centers.shape[0]))


def test_the_head_gives_logits_in_training_and_unit_uv_in_eval() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(image_size=32, head="classification"))
    gray = torch.rand(2, 1, 32, 32)
    logits = model.train()(gray)
    assert logits.shape == (2, chroma_bins.bin_centers().shape[0], 16, 16)
    with torch.no_grad():
        out = model.eval()(gray)
    assert out.shape == (2, 2, 32, 32) and 0.0 <= float(out.min()) and float(out.max()) <= 1.0
    with pytest.raises(ValueError, match="residual encoder"):
        ModelConfig(arch="hypercolumn", head="classification")


def test_the_loss_is_lowest_for_the_true_colours() -> None:
    centers = chroma_bins.bin_centers()
    loss = ChromaClassLoss(torch.ones(centers.shape[0]))
    rgb = KNOWN[:4].view(4, 3, 1, 1).expand(4, 3, 4, 4)  # flat colours: pooling keeps them
    _, target = gray_and_target(rgb)  # at 4 x 4; the logits are at half that
    truth = torch.log(chroma_bins.soft_encode(rgb_to_yuv(rgb)[:, 1:, :2, :2], centers).clamp_min(1e-6))
    wrong = truth.roll(1, dims=0)
    assert loss(truth, target) < loss(wrong, target)


@pytest.mark.slow  # multi-second: make test only (test-fast stays under a minute)
def test_training_the_classification_head_end_to_end(photo_dir: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(
        data=str(photo_dir), out=str(tmp_path / "c.safetensors"), model=ModelConfig(image_size=32, head="classification"),
        backbone_weights="none", batch_size=4, steps=12, device="cpu", checkpoint_every=12, optimizer="adam", lr=1e-3,
    )  # fmt: skip
    result = train(cfg, log_every=1)
    losses = [v for _, v in result.losses]
    assert min(losses[-3:]) < losses[0]  # it learns
    ckpt = load_checkpoint(cfg.out)
    assert ckpt.config.head == "classification"
    colorizer = Colorizer(model_from_checkpoint(ckpt).eval(), device="cpu")
    photo = np.asarray(Image.open(sorted(photo_dir.iterdir())[0]).convert("L"))
    out = colorizer.colorize_luma([photo.astype(np.float32) / 255])[0]
    assert out.shape == (*photo.shape, 3) and out.dtype == np.uint8
