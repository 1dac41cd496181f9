"""The training loop (CPU and CUDA): seed optimiser by default, mixed precision where the
hardware has it (grad scaling for fp16), periodic checkpoints with optimiser state, exact resume,
validation triptychs named by step.

Run it as `colorize train --data DIR --out model.safetensors` (see `flows/cli.py`).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from colorize_core.data.dataset import FolderImages, ShardImages, StepBatchSampler, as_float, open_training_data
from colorize_core.model import chroma_bins
from colorize_core.model.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint, save_checkpoint
from colorize_core.model.color import rgb_to_yuv, unit_to_uv, uv_to_unit
from colorize_core.model.cpu_features import auto_cpu_path
from colorize_core.model.device import amp_dtype
from colorize_core.model.infer import Colorizer, InferenceOptions
from colorize_core.model.loss import BlurredUVLoss, ChromaClassLoss
from colorize_core.model.models import build_model
from colorize_core.training import distributed
from colorize_core.training.config import TrainConfig

log = logging.getLogger(__name__)


@dataclass
class StepInfo:
    step: int
    total: int
    loss: float
    images_per_s: float


@dataclass
class TrainResult:
    checkpoint: str
    model_id: str
    step: int
    losses: list[tuple[int, float]]
    triptychs: list[str]
    seconds: float


def loader_workers(requested: int | None, device: torch.device) -> int:
    """On CPU the model needs every core (0: load in the training process); a GPU trains faster
    than one process can decode (about 1,500 samples/s per core), so it gets up to 8 workers."""
    if requested is not None:
        return requested
    return 0 if device.type == "cpu" else max(1, min(8, (os.cpu_count() or 2) - 1))


def make_optimizer(cfg: TrainConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def gray_and_target(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 3, H, W) RGB -> model input (N, 1, H, W) luma and target (N, 2, H, W) UV in [0, 1]."""
    yuv = rgb_to_yuv(rgb)
    return yuv[:, :1].clamp(0.0, 1.0), uv_to_unit(yuv[:, 1:]).clamp(0.0, 1.0)


PRIOR_IMAGES = 256  # photos the classification head's colour prior is counted on


def make_loss(cfg: TrainConfig, dataset: FolderImages | ShardImages) -> nn.Module:
    """The head's loss: blurred L2 for regression; for classification, cross-entropy rebalanced
    by the chroma-bin prior of (up to PRIOR_IMAGES of) the training photos, the same on every
    rank and on resume (the photos are the dataset's first, not a random draw)."""
    if cfg.model.head == "regression":
        return BlurredUVLoss()
    centers = chroma_bins.bin_centers()
    counts = torch.zeros(centers.shape[0], dtype=torch.float64)
    photos = dataset.validation_images(min(PRIOR_IMAGES, len(dataset)))
    for i in range(0, len(photos), 16):
        _, target = gray_and_target(photos[i : i + 16])
        counts += chroma_bins.bin_histogram(unit_to_uv(target), centers)
    return ChromaClassLoss(chroma_bins.rebalance_weights(counts, centers))


def _validation_images(cfg: TrainConfig, dataset: FolderImages | ShardImages, count: int = 4) -> torch.Tensor:
    source = open_training_data(cfg.val_data, cfg.model.image_size) if cfg.val_data else dataset
    return source.validation_images(count)


def write_triptych(path: Path, model: nn.Module, truth: torch.Tensor, device: torch.device) -> None:
    """One row per image: gray | colorized | truth, as a PNG."""
    was_training = model.training
    model.eval()
    gray, _ = gray_and_target(truth)
    # The model is borrowed mid-training: keep its memory format (channels_last would convert its
    # parameters in place) and its fp32/amp choice as the inference defaults make them.
    # PyTorch's own CPU path (never the int8 conversion, whatever COLORIZE_CPU_PATH says).
    options = InferenceOptions(channels_last=False, cpu_path=auto_cpu_path())
    colorizer = Colorizer(model, device=device, image_size=truth.shape[-1], options=options)
    rows = []
    for y, t in zip(gray, truth):
        col = colorizer.colorize_luma([y[0].numpy()])[0]
        g = (y.expand(3, -1, -1) * 255).round().byte().permute(1, 2, 0).numpy()
        tr = (t * 255).round().byte().permute(1, 2, 0).numpy()
        rows.append(torch.cat([torch.from_numpy(a) for a in (g, col, tr)], dim=1))
    model.train(was_training)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(torch.cat(rows, dim=0).numpy()).save(path)


def _resume_state(cfg: TrainConfig) -> tuple[nn.Module, dict[str, Any] | None, dict[str, Any]]:
    if cfg.resume and Path(cfg.out).is_file():
        ckpt = load_checkpoint(cfg.out)
        if ckpt.config != cfg.model and replace(ckpt.config, padding=cfg.model.padding) == cfg.model:
            # Padding holds no weights: a model resumes with the padding it was trained with (a
            # scheduled retrain of a model from before replicate became the default, say).
            log.warning("resuming %s with its own padding=%s (this run asked for %s)", cfg.out, ckpt.config.padding, cfg.model.padding)
        elif ckpt.config != cfg.model:
            raise CheckpointError(f"cannot resume {cfg.out}: it holds {ckpt.config}, the run asks for {cfg.model}")
        return model_from_checkpoint(ckpt), ckpt.optim_state, ckpt.meta
    torch.manual_seed(cfg.seed)  # the same seed gives the same initial head weights
    return build_model(cfg.model, backbone_weights=cfg.backbone_weights), None, {}


def train(cfg: TrainConfig, *, on_step: Callable[[StepInfo], None] | None = None, log_every: int = 10) -> TrainResult:
    """Train (or resume) until `cfg.steps`; returns where the checkpoint is and what happened.

    `on_step` and the loss curve see every `log_every`-th step and the last one."""
    started = time.perf_counter()
    dist, device = distributed.setup(cfg.device)
    try:
        return _train(cfg, dist, device, started, on_step, log_every)
    finally:
        distributed.cleanup(dist)


@dataclass
class _Run:
    """One training run's moving parts: set up once by `_prepare`, advanced by `_train_step`."""

    cfg: TrainConfig
    dist: distributed.DistInfo
    device: torch.device
    core: nn.Module  # what checkpoints hold
    model: nn.Module  # what steps call: `core`, wrapped in DDP and/or compiled
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    dtype: torch.dtype | None  # autocast dtype, or None for fp32
    loss_fn: nn.Module
    dataset: FolderImages | ShardImages
    val_truth: torch.Tensor
    val_dir: Path
    step: int
    losses: list[tuple[int, float]]
    triptychs: list[str] = field(default_factory=list)

    def save(self) -> str:
        """Checkpoint at the current step; returns the model id (on the main rank)."""
        model_id = ""
        if self.dist.is_main:  # one writer; the others wait so nobody reads a checkpoint mid-write
            cfg = self.cfg
            info = {"step": self.step, "seed": cfg.seed, "losses": self.losses, "train_config": _jsonable(cfg), "world_size": self.dist.world}
            if self.scaler.is_enabled():
                info["scaler"] = self.scaler.state_dict()
            model_id = save_checkpoint(cfg.out, self.core, meta=info, optimizer=self.optimizer)
        distributed.barrier(self.dist)
        return model_id

    def triptych(self) -> None:
        if self.dist.is_main:
            path = self.val_dir / f"step_{self.step:07d}.png"
            write_triptych(path, self.core, self.val_truth, self.device)
            self.triptychs.append(str(path))


def _prepare(cfg: TrainConfig, dist: distributed.DistInfo, device: torch.device) -> _Run:
    """The data, the model (resumed if asked), its optimiser and precision: ready for step 1."""
    # The data first: a wrong --data path must fail before minutes go into fetching weights.
    dataset = open_training_data(cfg.data, cfg.model.image_size)
    core, optim_state, meta = _resume_state(cfg)  # every rank reads the same checkpoint
    core.to(device).train()
    if cfg.channels_last:
        core.to(memory_format=torch.channels_last)  # checkpoints still save contiguous tensors
    # DDP averages gradients over ranks after each backward; checkpoints hold the inner model.
    model: nn.Module = DistributedDataParallel(core, device_ids=[device.index] if device.type == "cuda" else None) if dist.enabled else core
    if cfg.compile:
        model = torch.compile(model)  # type: ignore[assignment]  # after DDP: its optimizer splits graphs at buckets
    optimizer = make_optimizer(cfg, [p for p in core.parameters() if p.requires_grad])
    if optim_state is not None:
        optimizer.load_state_dict(optim_state)
    dtype = amp_dtype(device)  # bf16/fp16 autocast on CUDA, bf16 on CPUs that have it natively
    # fp16 needs loss scaling to keep small gradients; bf16 has fp32's range and does not.
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    if "scaler" in meta and scaler.is_enabled():
        scaler.load_state_dict(meta["scaler"])
    return _Run(
        cfg, dist, device, core, model, optimizer, scaler, dtype, make_loss(cfg, dataset).to(device), dataset,
        val_truth=_validation_images(cfg, dataset),
        val_dir=Path(cfg.val_dir) if cfg.val_dir else Path(cfg.out).with_name(Path(cfg.out).stem + "_val"),
        step=int(meta.get("step", 0)),
        losses=[tuple(x) for x in meta.get("losses", [])],  # type: ignore[misc]
    )  # fmt: skip


def _loader(run: _Run) -> DataLoader:
    """Batches from the run's step on: the global batch at each step is a function of (seed,
    step), and each rank takes its slice."""
    cfg, dist = run.cfg, run.dist
    sampler = StepBatchSampler(
        len(run.dataset), cfg.batch_size * dist.world, seed=cfg.seed, start_step=run.step, total_steps=cfg.steps, blocks=run.dataset.blocks
    )
    return DataLoader(
        run.dataset,
        batch_sampler=distributed.RankSlices(sampler, dist.rank, cfg.batch_size) if dist.enabled else sampler,
        num_workers=loader_workers(cfg.num_workers, run.device),
        pin_memory=run.device.type == "cuda",
        persistent_workers=False,
    )


def _train_step(run: _Run, rgb: torch.Tensor) -> torch.Tensor:
    """One optimiser step on a uint8 batch; returns the loss (still on the device: no sync)."""
    gray, target = gray_and_target(as_float(rgb.to(run.device, non_blocking=True)))
    if run.cfg.channels_last:
        gray = gray.contiguous(memory_format=torch.channels_last)
    with torch.autocast(run.device.type, dtype=run.dtype, enabled=run.dtype is not None):
        pred = run.model(gray)
    loss = run.loss_fn(pred, target)
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.step += 1
    return loss


def _train(
    cfg: TrainConfig,
    dist: distributed.DistInfo,
    device: torch.device,
    started: float,
    on_step: Callable[[StepInfo], None] | None,
    log_every: int,
) -> TrainResult:
    run = _prepare(cfg, dist, device)
    window_start, window_images = time.perf_counter(), 0
    model_id = run.save() if run.step >= cfg.steps else ""
    for rgb in _loader(run):
        loss = _train_step(run, rgb)
        step = run.step
        window_images += rgb.shape[0] * dist.world
        # The host waits for the device only on log steps (every `log_every`, and the last) and
        # before a checkpoint (never save weights a NaN has reached): reading the loss, or agreeing
        # on the time budget across ranks, every step would stall the GPU.
        logged = step % log_every == 0 or step == cfg.steps
        saving = step % cfg.checkpoint_every == 0 or step == cfg.steps
        out_of_time = False
        if logged or saving:
            global_loss = _checked(distributed.mean_across(dist, loss), step)
        if logged:
            run.losses.append((step, round(global_loss, 6)))
            if on_step is not None and dist.is_main:
                rate = window_images / max(time.perf_counter() - window_start, 1e-9)
                on_step(StepInfo(step, cfg.steps, global_loss, rate))
            out_of_time = cfg.max_seconds is not None and time.perf_counter() - started > cfg.max_seconds
            out_of_time = distributed.any_across(dist, out_of_time, device)
        if cfg.val_every and step % cfg.val_every == 0 and step != cfg.steps:
            run.triptych()
        if saving or out_of_time:  # a time stop is a log step: its loss was checked above
            model_id = run.save()
        if out_of_time:
            log.info("stopping at step %d: the time budget of %.0f s is spent", step, cfg.max_seconds)
            break
    run.triptych()
    return TrainResult(cfg.out, model_id, run.step, run.losses, run.triptychs, time.perf_counter() - started)


def _checked(loss: float, step: int) -> float:
    if not math.isfinite(loss):
        raise FloatingPointError(f"loss became {loss} by step {step}; try a lower --lr")
    return loss


def _jsonable(cfg: TrainConfig) -> dict[str, Any]:
    d = asdict(cfg)
    d["model"] = cfg.model.to_dict()
    return d
