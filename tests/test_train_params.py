"""Training settings are defined once (TrainConfig's defaults, colorize_core/training/train_params.py):
the train-model flow's signature and `colorize train`'s options agree with it, field by field."""

from __future__ import annotations

import inspect

import pytest

from colorize_core.training.train import TrainConfig
from colorize_core.training.train_params import DEFAULTS, TRAIN_PARAMS, default, to_train_config
from flows.cli import build_parser
from flows.train_model import make_train_config, train_model


def test_the_flow_takes_every_training_parameter_with_its_default() -> None:
    signature = inspect.signature(train_model.fn)
    own = {"data", "checkpoint", "registry"}
    assert set(signature.parameters) - own == {p.name for p in TRAIN_PARAMS}
    for param in TRAIN_PARAMS:
        assert signature.parameters[param.name].default == default(param), param.name


def test_the_cli_offers_every_training_parameter_with_its_default() -> None:
    args = build_parser().parse_args(["train", "--data", "d", "--out", "o"])
    for param in TRAIN_PARAMS:
        assert getattr(args, param.name) == default(param), param.name
    flipped = build_parser().parse_args(["train", "--data", "d", "--out", "o", "--resume", "--no-compile", "--steps", "7"])
    assert flipped.resume is True and flipped.compile is False and flipped.steps == 7


def test_defaults_give_trainconfigs_defaults_and_each_value_lands_in_its_field() -> None:
    base = TrainConfig(data="d", out="o")
    assert to_train_config("d", "o", {}) == base
    assert make_train_config("d", "o", **DEFAULTS) == base  # a local checkpoint: no val_dir
    cfg = to_train_config("d", "o", {"image_size": 64, "train_backbone": True, "workers": 3, "resume": True})
    assert (cfg.model.image_size, cfg.model.train_backbone, cfg.num_workers, cfg.resume) == (64, True, 3, True)
    with pytest.raises(ValueError):
        to_train_config("d", "o", {"optimizer": "nope"})
