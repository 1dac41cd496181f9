"""Training's configuration: one frozen dataclass whose defaults are the only defaults.

Kept free of torch so the command line can build its options without importing it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from colorize_core.model.config import ModelConfig

OPTIMIZERS = ("sgd", "adam", "adamw")


@dataclass(frozen=True)
class TrainConfig:
    data: str
    out: str
    model: ModelConfig = field(default_factory=ModelConfig)
    backbone_weights: str = "imagenet"
    batch_size: int = 6
    steps: int = 1000
    lr: float = 0.1  # the seed's plain SGD
    optimizer: str = "sgd"
    momentum: float = 0.0
    weight_decay: float = 0.0
    device: str = "auto"
    seed: int = 0
    checkpoint_every: int = 500
    val_every: int = 0  # 0: only at the end
    val_data: str | None = None
    val_dir: str | None = None  # default: "<out without suffix>_val/"
    num_workers: int | None = None  # DataLoader processes; None: 0 on CPU, up to 8 on CUDA
    max_seconds: float | None = None  # stop early (with a checkpoint) after this much wall time
    resume: bool = False
    channels_last: bool = True  # NHWC activations: what cuDNN and oneDNN convolutions prefer
    compile: bool = False  # torch.compile the model: pays on long CUDA runs, costs a minute to start

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        if self.steps < 0 or self.batch_size <= 0:
            raise ValueError("steps must be >= 0 and batch_size > 0")
