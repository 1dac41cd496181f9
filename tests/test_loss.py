import pytest
import torch

from colorize_core.model.loss import BlurredUVLoss, depthwise_blur, gaussian_kernel


def test_kernels_are_normalised_and_symmetric() -> None:
    for size in (3, 5):
        k = gaussian_kernel(size)
        assert k.shape == (size, size)
        assert torch.isclose(k.sum(), torch.tensor(1.0))
        assert torch.allclose(k, k.T) and torch.allclose(k, k.flip(0))


def test_blur_keeps_constant_images_and_channels_apart() -> None:
    x = torch.zeros(1, 2, 9, 9)
    x[0, 0, 4, 4] = 1.0  # an impulse in U only
    out = depthwise_blur(x, gaussian_kernel(5))
    assert out[0, 1].abs().max() == 0.0  # nothing leaks into V
    assert torch.isclose(out[0, 0].sum(), torch.tensor(1.0))
    const = torch.full((1, 2, 7, 7), 0.3)
    assert torch.allclose(depthwise_blur(const, gaussian_kernel(3)), const)


def test_error_in_u_gives_no_gradient_on_v() -> None:
    target = torch.rand(2, 2, 16, 16)
    pred = target.clone()
    pred[:, 0] += 0.2 * torch.rand(2, 16, 16)  # wrong U, exact V
    pred.requires_grad_(True)
    BlurredUVLoss()(pred, target).backward()
    assert pred.grad is not None
    assert pred.grad[:, 0].abs().sum() > 0
    assert pred.grad[:, 1].abs().max() == 0.0


def test_loss_is_zero_only_when_equal_and_averages_three_terms() -> None:
    t = torch.rand(1, 2, 12, 12)
    loss = BlurredUVLoss()
    assert loss(t, t).item() == 0.0
    p = t + 0.1  # a constant offset survives every blur unchanged: each term is 0.01
    assert loss(p, t).item() == pytest.approx(0.01, rel=1e-4)


def test_shape_mismatch_is_refused() -> None:
    with pytest.raises(ValueError):
        BlurredUVLoss()(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4))
