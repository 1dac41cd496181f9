"""A model's configuration: everything needed to rebuild its layers (weights travel separately).

Kept free of torch so the command line can offer the choices without importing it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Arch = Literal["residual_encoder", "hypercolumn"]
ARCHS: tuple[Arch, ...] = ("residual_encoder", "hypercolumn")
# What the decoder predicts: UV directly under the blurred L2 loss (the seed's), or a
# distribution over chroma bins under a rebalanced cross-entropy (Zhang et al. 2016).
Head = Literal["regression", "classification"]
HEADS: tuple[Head, ...] = ("regression", "classification")
# How the decoder's 3x3 convolutions see past the image's edge: zeros (the seed's), or the edge
# pixels repeated, so a border looks like more of the image instead of a black frame. Zero
# padding gave the seed's model coloured fringes along the borders; replicate, the default since
# issue 13, cut the border's excess chroma error by 41-69% in three seeds (QUALITY.md).
Padding = Literal["zeros", "replicate"]
PADDINGS: tuple[Padding, ...] = ("zeros", "replicate")


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model's layers (weights travel separately)."""

    arch: Arch = "residual_encoder"
    image_size: int = 224  # the working size inference resizes to; any multiple of 8 runs
    train_backbone: bool = False
    head: Head = "regression"
    padding: Padding = "replicate"

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"unknown model {self.arch!r}; choose one of {', '.join(ARCHS)}")
        if self.head not in HEADS:
            raise ValueError(f"unknown head {self.head!r}; choose one of {', '.join(HEADS)}")
        if self.padding not in PADDINGS:
            raise ValueError(f"unknown padding {self.padding!r}; choose one of {', '.join(PADDINGS)}")
        if self.head == "classification" and self.arch != "residual_encoder":
            raise ValueError("the classification head is built on the residual encoder only")
        if self.image_size <= 0 or self.image_size % 8:
            raise ValueError(f"image_size must be a positive multiple of 8, got {self.image_size}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        # Checkpoints from before a field existed were built as the seed's model: regression head,
        # zero padding (not today's default padding).
        fields = {k: data[k] for k in ("arch", "image_size", "train_backbone", "head", "padding") if k in data}
        return cls(**{"padding": "zeros", **fields})
