"""Deployments, defined once: `colorize serve` serves them from one process on a single machine;
infra/prefect.yaml declares the same ones for work pools (tests check they agree).

Run: `colorize serve --source ARCHIVE --dest OUT --dataset DATASET --checkpoint MODEL`.
"""

from __future__ import annotations

from typing import Any

from flows.build_dataset import build_dataset_flow
from flows.colorize_archive import colorize_shard_flow
from flows.nightly import nightly
from flows.train_model import train_model

NIGHTLY_CRON = "0 2 * * *"  # 02:00 every night


def deployments(source: str, dest: str, dataset: str, checkpoint: str) -> list[Any]:
    """The project's deployments, with their schedules and default parameters."""
    return [
        nightly.to_deployment(
            name="nightly",
            cron=NIGHTLY_CRON,
            parameters={"source": source, "dest": dest, "checkpoint": "latest"},
            description="Colorize what is new in the archive with the latest model.",
        ),
        build_dataset_flow.to_deployment(
            name="rebuild-dataset",
            parameters={"source": source, "dest": dataset},
            description="Rebuild the training set from a bucket of colour photos.",
        ),
        train_model.to_deployment(
            name="train",
            parameters={"data": dataset, "checkpoint": checkpoint},
            description="Train (resuming) and register the model as the latest.",
        ),
        colorize_shard_flow.to_deployment(name="shard", description="One shard of colorize-archive (scale-out)."),
    ]


def serve_deployments(source: str, dest: str, dataset: str, checkpoint: str) -> None:
    from prefect import serve

    serve(*deployments(source, dest, dataset, checkpoint))
