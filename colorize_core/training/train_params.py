"""Training's flat parameters, defined once: what the train-model flow takes (and so the UI and
deployments show) and what `colorize train` offers, each mapped to its place in `TrainConfig`,
whose defaults are the only defaults. The flow's signature is checked against this table by
tests; the CLI's options and `to_train_config` are made from it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from colorize_core.model.config import ARCHS, HEADS, PADDINGS, ModelConfig
from colorize_core.training.config import OPTIMIZERS, TrainConfig


@dataclass(frozen=True)
class TrainParam:
    name: str  # the flow parameter; the CLI option is --name-with-dashes
    field: str  # where it lives in TrainConfig: "steps", "model.image_size"
    type: type
    help: str
    choices: tuple[str, ...] | None = None


TRAIN_PARAMS = (
    TrainParam("steps", "steps", int, "total optimiser steps (0: write an untrained checkpoint)"),
    TrainParam("image_size", "model.image_size", int, "training crop size (multiple of 8)"),
    TrainParam("batch_size", "batch_size", int, "images per step (per process under torchrun)"),
    TrainParam("model", "model.arch", str, "architecture", ARCHS),
    TrainParam("head", "model.head", str, "regression (the seed's blurred L2) or classification (chroma bins, Zhang et al. 2016)", HEADS),
    TrainParam("padding", "model.padding", str, "decoder padding at the image's edge: replicate, or zeros (the seed's: coloured fringes)", PADDINGS),
    TrainParam("backbone_weights", "backbone_weights", str, "imagenet, none, or a VGG16 state-dict file"),
    TrainParam("train_backbone", "model.train_backbone", bool, "fine-tune VGG16 too (frozen by default)"),
    TrainParam("optimizer", "optimizer", str, "optimiser", OPTIMIZERS),
    TrainParam("lr", "lr", float, "learning rate"),
    TrainParam("momentum", "momentum", float, "SGD momentum"),
    TrainParam("weight_decay", "weight_decay", float, "weight decay"),
    TrainParam("seed", "seed", int, "seed for initialisation and sampling"),
    TrainParam("checkpoint_every", "checkpoint_every", int, "steps between checkpoints"),
    TrainParam("val_every", "val_every", int, "steps between validation triptychs (0: at the end)"),
    TrainParam("val_data", "val_data", str, "folder of validation photos (default: the first training photos)"),
    TrainParam("device", "device", str, "auto (CUDA when present), cpu, cuda or cuda:N"),
    TrainParam("workers", "num_workers", int, "DataLoader worker processes (default: 0 on CPU, up to 8 on CUDA)"),
    TrainParam("max_seconds", "max_seconds", float, "stop (with a checkpoint) after this much time"),
    TrainParam("resume", "resume", bool, "continue from the checkpoint if it exists"),
    TrainParam("compile", "compile", bool, "torch.compile the model (pays on long GPU runs; a minute to start)"),
)

_DEFAULT_CONFIG = TrainConfig(data="", out="")


def default(param: TrainParam) -> Any:
    """The parameter's default: TrainConfig's (or ModelConfig's) field default."""
    value: Any = _DEFAULT_CONFIG
    for part in param.field.split("."):
        value = getattr(value, part)
    return value


def to_train_config(data: str, out: str, values: dict[str, Any], **extra: Any) -> TrainConfig:
    """Flat parameter values (by name; missing ones take their defaults) -> a TrainConfig."""
    top: dict[str, Any] = {}
    model: dict[str, Any] = {}
    for param in TRAIN_PARAMS:
        value = values.get(param.name, default(param))
        head, _, sub = param.field.partition(".")
        (model if head == "model" else top)[sub or head] = value
    return replace(_DEFAULT_CONFIG, data=data, out=out, model=ModelConfig(**model), **top, **extra)


DEFAULTS: dict[str, Any] = {param.name: default(param) for param in TRAIN_PARAMS}
