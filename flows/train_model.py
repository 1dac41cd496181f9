"""The `train-model` flow: train from a dataset URI, checkpoint to a URI, resume on retry,
publish the loss curve and validation triptychs, register the model as the latest.

Run: `colorize train --data DATASET --out CHECKPOINT`, or as a deployment.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.runtime import task_run

from colorize_core.archive.gallery import image_uri
from colorize_core.storage.objects import ObjectNotFound
from colorize_core.storage.stores import split_uri
from colorize_core.training.registry import register_model
from colorize_core.training.train import StepInfo, TrainConfig, TrainResult, train
from colorize_core.training.train_params import DEFAULTS, to_train_config
from flows.retries import RETRIES, RETRY_DELAYS, retry_on_transient_errors


def loss_chart(losses: list[tuple[int, float]], width: int = 480, height: int = 200) -> Image.Image:
    """A plain line chart of loss over steps (no plotting library needed)."""
    img = Image.new("RGB", (width, height), "white")
    if len(losses) < 2:
        return img
    draw = ImageDraw.Draw(img)
    steps, values = [s for s, _ in losses], [v for _, v in losses]
    lo, hi = min(values), max(values)
    span_s, span_v = max(steps[-1] - steps[0], 1), max(hi - lo, 1e-12)
    pts = [(10 + (s - steps[0]) / span_s * (width - 20), 10 + (hi - v) / span_v * (height - 30)) for s, v in losses]
    draw.line(pts, fill=(200, 60, 30), width=2)
    draw.text((10, height - 16), f"steps {steps[0]}-{steps[-1]}   loss {hi:.4f} -> {values[-1]:.4f}", fill="black")
    return img


def _work_path(checkpoint_uri: str) -> Path:
    """A stable local file per checkpoint URI, so a retried task finds its own progress."""
    digest = hashlib.sha256(checkpoint_uri.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / "colorize-train" / f"{digest}.safetensors"


@task(retries=RETRIES, retry_delay_seconds=RETRY_DELAYS, retry_condition_fn=retry_on_transient_errors)
def train_task(cfg: TrainConfig, checkpoint_uri: str, progress_every: int = 10) -> TrainResult:
    """Train; retried for a transient error only (flows/retries.py: the one policy), and a retry
    always resumes from the last checkpoint, locally or, on a fresh machine, from the copy at
    `checkpoint_uri`. `cfg.resume` decides only for the first attempt."""
    resume = cfg.resume or task_run.run_count > 1
    logger = get_run_logger()
    store, key = split_uri(checkpoint_uri)
    on_disk = store.local_path(key)
    is_local = on_disk is not None
    local = on_disk if on_disk is not None else _work_path(checkpoint_uri)
    if resume and not is_local and not local.exists():
        try:
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_bytes(store.read(key))
        except ObjectNotFound:
            pass  # nothing to resume: a fresh start
    progress = create_progress_artifact(0.0, key="train-progress", description=f"{cfg.steps} steps")

    def on_step(info: StepInfo) -> None:  # every `progress_every` steps and at the last
        note = f"step {info.step}/{info.total}, loss {info.loss:.4f}, {info.images_per_s:.1f} images/s"
        update_progress_artifact(progress, 100.0 * info.step / max(info.total, 1), description=note)
        logger.info(note)

    result = train(replace(cfg, out=str(local), resume=resume), on_step=on_step, log_every=progress_every)
    # Done, also when a time budget ended it before cfg.steps.
    update_progress_artifact(progress, 100.0, description=f"finished at step {result.step} of {cfg.steps}")
    if not is_local:
        store.write(key, local.read_bytes())
    return replace(result, checkpoint=checkpoint_uri)


def make_train_config(data: str, checkpoint: str, **values: Any) -> TrainConfig:
    """The flow's flat parameters (what the UI and deployments show) -> a `TrainConfig`."""
    # Triptychs go beside a local checkpoint; for a remote one, to a local work folder.
    val_dir = None if split_uri(checkpoint)[0].local_path() is not None else str(_work_path(checkpoint).with_suffix(".val"))
    return to_train_config(data, checkpoint, values, val_dir=val_dir)


@flow(name="train-model", log_prints=True)
def train_model(
    data: str,
    checkpoint: str,
    # Defaults from TrainConfig through colorize_core/training/train_params.py (tests check each one).
    steps: int = DEFAULTS["steps"],
    image_size: int = DEFAULTS["image_size"],
    batch_size: int = DEFAULTS["batch_size"],
    model: str = DEFAULTS["model"],
    head: str = DEFAULTS["head"],
    padding: str = DEFAULTS["padding"],
    backbone_weights: str = DEFAULTS["backbone_weights"],
    train_backbone: bool = DEFAULTS["train_backbone"],
    optimizer: str = DEFAULTS["optimizer"],
    lr: float = DEFAULTS["lr"],
    momentum: float = DEFAULTS["momentum"],
    weight_decay: float = DEFAULTS["weight_decay"],
    seed: int = DEFAULTS["seed"],
    checkpoint_every: int = DEFAULTS["checkpoint_every"],
    val_every: int = DEFAULTS["val_every"],
    val_data: str | None = DEFAULTS["val_data"],
    device: str = DEFAULTS["device"],
    workers: int | None = DEFAULTS["workers"],
    max_seconds: float | None = DEFAULTS["max_seconds"],
    resume: bool = DEFAULTS["resume"],
    compile: bool = DEFAULTS["compile"],
    registry: str | None = None,
) -> dict[str, Any]:
    """Train on a dataset URI, write the checkpoint to `checkpoint` (a path or URI), register it."""
    logger = get_run_logger()
    params = {k: v for k, v in locals().items() if k not in ("data", "checkpoint", "registry", "logger")}
    cfg = make_train_config(data, checkpoint, **params)
    result = train_task(cfg, checkpoint)
    logger.info("trained to step %d: model %s", result.step, result.model_id)
    entry = register_model(checkpoint, result.model_id, registry=registry, meta={"step": result.step, "data": data})
    if result.losses:
        create_table_artifact([{"step": s, "loss": v} for s, v in result.losses], key="train-loss", description="loss by step")
    parts = [f"# Model `{result.model_id}`", "", f"step {result.step} of {steps}; checkpoint `{checkpoint}`", ""]
    parts.append(f"![loss curve]({image_uri(loss_chart(result.losses))})")
    for path in result.triptychs[-2:]:
        with Image.open(path) as trip:
            parts += ["", f"**{Path(path).name}** (gray | colorized | truth)", "", f"![triptych]({image_uri(trip)})"]
    create_markdown_artifact("\n".join(parts), key="train-report", description=f"model {result.model_id}")
    last_loss = result.losses[-1][1] if result.losses else None
    return {"model_id": result.model_id, "step": result.step, "checkpoint": checkpoint, "registered": entry["checkpoint"], "last_loss": last_loss}


