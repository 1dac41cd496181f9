"""VGG16 feature taps (conv1_2, conv2_2, conv3_3, conv4_3) and the loading of their weights.

Weights are an explicit choice, as in torchvision: "imagenet" (torchvision's IMAGENET1K_V1 file:
from torchvision's cache, downloaded into it on first use through torch.hub, with its hash check
and progress bar), a path to a torchvision-format state dict (.pth/.pt or .safetensors), or
"none" (random initialisation, for tests and from-scratch runs).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn
from torchvision.models import VGG16_Weights

# Index in torchvision's `vgg16().features` of the ReLU just before each of the first four
# max-pools (after conv1_2, conv2_2, conv3_3 and conv4_3).
TAP_INDICES = (3, 8, 15, 22)
TAP_CHANNELS = (64, 128, 256, 512)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# torchvision's file; its name carries the first hex digits of its SHA-256, which torch.hub checks.
IMAGENET_URL = VGG16_Weights.IMAGENET1K_V1.url


class BackboneWeightsError(RuntimeError):
    """The requested backbone weights could not be found or do not fit VGG16."""


def imagenet_weights_path() -> Path:
    """Where torchvision keeps (and we look for) the VGG16 ImageNet weights file."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(IMAGENET_URL)


def download_imagenet_weights() -> Path:
    """Fetch the VGG16 ImageNet weights into torchvision's cache the way torchvision does
    (torch.hub: a .partial file renamed when complete, the SHA-256 prefix in the file name
    checked, a progress bar on stderr); returns the file. Offline, one error that says what to do."""
    path = imagenet_weights_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(IMAGENET_URL, str(path), hash_prefix=_hash_prefix(IMAGENET_URL), progress=True)
    except (OSError, RuntimeError) as exc:  # URLError is an OSError; a hash mismatch a RuntimeError
        raise BackboneWeightsError(
            f"VGG16 ImageNet weights are not in {path} and could not be downloaded from {IMAGENET_URL} ({exc}): "
            "copy that file to that path (or set TORCH_HOME), or pass --backbone-weights FILE (a VGG16 state dict) "
            "or --backbone-weights none (random weights)"
        ) from exc
    return path


def _hash_prefix(url: str) -> str | None:
    match = torch.hub.HASH_REGEX.search(os.path.basename(url))
    return match.group(1) if match else None


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise BackboneWeightsError(f"backbone weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        # weights_only: a state dict is tensors; never run pickled code from a file we were handed.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # the file's own error says what is wrong with it
        raise BackboneWeightsError(f"cannot read backbone weights {path}: {exc}") from exc
    if not isinstance(state, dict):
        raise BackboneWeightsError(f"{path} is not a state dict (got {type(state).__name__})")
    return state


def load_backbone_state(weights: str | os.PathLike[str]) -> dict[str, torch.Tensor] | None:
    """Resolve a weights choice to the `features.*` tensors up to conv4_3, or None for "none"."""
    choice = os.fspath(weights)
    if choice == "none":
        return None
    if choice == "imagenet":
        path = imagenet_weights_path()
        if not path.is_file():
            path = download_imagenet_weights()
    else:
        path = Path(choice)
    state = _read_state_dict(path)
    # Accept a full VGG16 state dict ("features.0.weight", ...) or the features alone ("0.weight").
    prefix = "features." if any(k.startswith("features.") for k in state) else ""
    wanted = [f"{i}.{p}" for i in _CONV_INDICES for p in ("weight", "bias")]
    missing = [k for k in wanted if prefix + k not in state]
    if missing:
        raise BackboneWeightsError(
            f"{path} is not a torchvision VGG16 state dict: missing {', '.join(missing[:4])}"
            + (" ..." if len(missing) > 4 else "")
        )
    return {k: state[prefix + k] for k in wanted}


# VGG16 ("configuration D") up to conv4_3: channels per 3x3 conv, "M" for a 2x2 max-pool.
_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512)
# Conv layers of vgg16().features up to conv4_3 (the ReLUs and pools in between hold no weights).
_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21)


def vgg16_features() -> nn.Sequential:
    """torchvision's `vgg16().features[:23]`, built directly: same modules, same state-dict keys
    and same initialisation, without allocating VGG16's 120 M-parameter classifier."""
    layers: list[nn.Module] = []
    cin = 3
    for item in _LAYOUT:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        conv = nn.Conv2d(cin, int(item), kernel_size=3, padding=1)
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(conv.bias)
        layers += [conv, nn.ReLU(inplace=True)]
        cin = int(item)
    return nn.Sequential(*layers)


class VGG16Taps(nn.Module):
    """Gray (N, 1, H, W) in [0, 1] -> the four VGG16 tap tensors (full, 1/2, 1/4, 1/8 resolution)."""

    def __init__(self, *, weights: str | os.PathLike[str] = "none", trainable: bool = False) -> None:
        super().__init__()
        self.features = vgg16_features()
        state = load_backbone_state(weights)
        if state is not None:
            try:
                self.features.load_state_dict(state, strict=True)
            except RuntimeError as exc:
                raise BackboneWeightsError(f"backbone weights {weights} do not fit VGG16: {exc}") from exc
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.trainable = trainable
        self.features.requires_grad_(trainable)

    def forward(self, gray: torch.Tensor) -> list[torch.Tensor]:
        x = (gray.expand(-1, 3, -1, -1) - self.mean) / self.std  # (N, 3, H, W), VGG's input
        taps: list[torch.Tensor] = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in TAP_INDICES:
                taps.append(x)
        return taps  # [(N,64,H,W), (N,128,H/2,W/2), (N,256,H/4,W/4), (N,512,H/8,W/8)]
