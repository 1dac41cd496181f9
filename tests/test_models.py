import pytest
import torch

from colorize_core.model.backbone import VGG16Taps
from colorize_core.model.config import ARCHS
from colorize_core.model.models import Hypercolumn, ModelConfig, ResidualEncoder, build_model, head_parameters


def n_params(params: object) -> int:
    return sum(p.numel() for p in params)  # type: ignore[attr-defined]


def test_backbone_up_to_conv4_3_has_the_vgg16_parameter_count() -> None:
    assert n_params(VGG16Taps().parameters()) == 7_635_264


def test_residual_encoder_own_layers_are_about_half_a_million() -> None:
    model = build_model(ModelConfig(arch="residual_encoder"))
    assert isinstance(model, ResidualEncoder)
    assert 450_000 < n_params(head_parameters(model)) < 550_000


def test_hypercolumn_takes_963_channels() -> None:
    model = build_model(ModelConfig(arch="hypercolumn"))
    assert isinstance(model, Hypercolumn)
    assert model.conv1[0].in_channels == 963


def test_taps_have_the_documented_shapes() -> None:
    taps = VGG16Taps()(torch.rand(2, 1, 48, 64))
    assert [tuple(t.shape) for t in taps] == [(2, 64, 48, 64), (2, 128, 24, 32), (2, 256, 12, 16), (2, 512, 6, 8)]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("hw", [(32, 32), (40, 64)])
def test_forward_backward(arch: str, hw: tuple[int, int]) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch=arch))  # type: ignore[arg-type]
    gray = torch.rand(2, 1, *hw)
    out = model(gray)
    assert out.shape == (2, 2, *hw)
    assert out.min() >= 0 and out.max() <= 1
    # It depends on its input: each photo of the batch gets its own chroma, varying over the image.
    assert (out[0] - out[1]).abs().max() > 1e-4 and out[0].std(dim=(1, 2)).min() > 1e-5
    out.mean().backward()
    heads = head_parameters(model)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in heads)  # every head layer learns
    assert all(p.grad is None for p in model.backbone.parameters())  # frozen by default


def test_trainable_backbone_gets_gradients() -> None:
    model = build_model(ModelConfig(train_backbone=True))
    model(torch.rand(1, 1, 32, 32)).mean().backward()
    assert all(p.grad is not None for p in model.backbone.parameters())


def test_size_not_multiple_of_8_is_refused() -> None:
    with pytest.raises(ValueError, match="multiples of 8"):
        build_model(ModelConfig())(torch.rand(1, 1, 30, 32))
    with pytest.raises(ValueError):
        ModelConfig(image_size=30)
    with pytest.raises(ValueError, match="unknown model"):
        ModelConfig(arch="unet")  # type: ignore[arg-type]


def test_decoder_padding_is_part_of_the_config_and_old_configs_keep_zeros() -> None:
    assert ModelConfig.from_dict({"arch": "residual_encoder", "image_size": 32}).padding == "zeros"
    model = build_model(ModelConfig(image_size=32, padding="replicate"))
    modes = {m.padding_mode for name, m in model.named_modules() if isinstance(m, torch.nn.Conv2d) and not name.startswith("backbone.") and m.kernel_size == (3, 3)}
    assert modes == {"replicate"}
    backbone_modes = {m.padding_mode for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d)}
    assert backbone_modes == {"zeros"}  # VGG16's own weights were learnt with zero padding
    with pytest.raises(ValueError, match="padding"):
        ModelConfig(padding="reflect")  # type: ignore[arg-type]
