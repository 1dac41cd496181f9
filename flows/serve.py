"""Deployments, defined once, here: `colorize serve` serves them from one process on a single
machine, and infra/prefect.yaml, which declares them for work pools, is generated from the same
definitions (`make prefect-yaml`; a test checks the file is what this module writes).

Run: `colorize serve --source ARCHIVE --dest OUT --photos COLOUR --dataset DATASET --checkpoint MODEL`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

NIGHTLY_CRON = "0 2 * * *"  # 02:00 every night, UTC


@dataclass(frozen=True)
class Locations:
    """Where a deployment's data lives: each a path, file:// or s3:// URI."""

    archive: str  # the black-and-white photos colorized every night
    colorized: str  # where the colorized photos and their metadata go
    photos: str  # colour photos the training set is rebuilt from (never the gray archive)
    dataset: str  # the training set built from `photos`
    checkpoint: str  # where training writes the model
    registry: str | None = None  # model registry (None: $COLORIZE_HOME/registry)


# The example locations infra/prefect.yaml is written with (edit the file's copies, or
# regenerate it from your own).
EXAMPLE = Locations(
    archive="s3://archive/black-and-white",
    colorized="s3://archive/colorized",
    photos="s3://photos/colour",
    dataset="s3://datasets/colour-256",
    checkpoint="s3://models/residual-encoder.safetensors",
    registry="s3://models/registry",
)


@dataclass(frozen=True)
class Deployment:
    name: str
    entrypoint: str  # "file.py:flow", relative to the project root
    description: str
    parameters: Callable[[Locations], dict[str, Any]]
    cron: str | None = None
    work_pool: str = "colorize-cpu"
    gpus: int = 0  # the pool's `gpu_limit` job variable
    pool_parameters: dict[str, Any] = field(default_factory=dict)  # only where it runs on a work pool

    def all_parameters(self, where: Locations, on_pool: bool) -> dict[str, Any]:
        params = {k: v for k, v in self.parameters(where).items() if v is not None}
        return {**params, **self.pool_parameters} if on_pool else params


DEPLOYMENTS = (
    Deployment(
        "nightly",
        "flows/nightly.py:nightly",
        "Colorize what is new in the archive with the latest model.",
        # retry_failed: set true for one night to retry the known failures (after fixing files).
        # colour_photos: "colorize" for an archive known to be all black-and-white (README).
        lambda at: {
            "source": at.archive,
            "dest": at.colorized,
            "checkpoint": "latest",
            "registry": at.registry,
            "retry_failed": False,
            "colour_photos": "skip",
        },
        cron=NIGHTLY_CRON,
        pool_parameters={"deployment": "colorize-shard/shard"},  # flow runs on the GPU pool, one per worker slot, claiming shards
    ),
    Deployment(
        "rebuild-dataset",
        "flows/build_dataset.py:build_dataset_flow",
        "Rebuild the training set from a bucket of colour photos.",
        lambda at: {"source": at.photos, "dest": at.dataset, "size": 256},
    ),
    Deployment(
        "train",
        "flows/train_model.py:train_model",
        "Train (resuming) and register the model as the latest.",
        # A scheduled retrain continues the model it trained before (`resume`).
        lambda at: {"data": at.dataset, "checkpoint": at.checkpoint, "registry": at.registry, "resume": True},
        work_pool="colorize-gpu",
        gpus=1,
        pool_parameters={"steps": 100000, "batch_size": 32, "optimizer": "adam", "lr": 0.001, "workers": 8, "val_every": 1000},
    ),
    Deployment(
        "shard",
        "flows/colorize_archive.py:colorize_shard_flow",
        "One shard of colorize-archive (scale-out), one GPU per pod.",
        lambda at: {},
        work_pool="colorize-gpu",
        gpus=1,
    ),
)


def flow_of(entrypoint: str) -> Any:
    """The flow an entrypoint names ("flows/nightly.py:nightly" -> flows.nightly.nightly)."""
    path, name = entrypoint.split(":")
    return getattr(importlib.import_module(path.removesuffix(".py").replace("/", ".")), name)


def deployments(where: Locations) -> list[Any]:
    """The deployments as `colorize serve` serves them (on this machine: no work pools)."""
    return [
        flow_of(d.entrypoint).to_deployment(name=d.name, cron=d.cron, parameters=d.all_parameters(where, on_pool=False), description=d.description)
        for d in DEPLOYMENTS
    ]


# How long stopping waits for the server to pause the schedules, and to cancel the flow runs in
# progress: a server that is slow but healthy answers well within these, one that is gone must
# not hold the stop.
PAUSE_TIMEOUT_S = 5.0
CANCEL_TIMEOUT_S = 5.0


def serve_deployments(where: Locations) -> None:
    """Serve every deployment from this process until SIGTERM or SIGINT (Ctrl-C). Either stops
    the runner (its flow runs are cancelled, for at most `CANCEL_TIMEOUT_S`), pauses the
    deployments' schedules for at most `PAUSE_TIMEOUT_S`, and records the signal
    (flows/exits.py), so the command ends with 143 or 130 as any stopped command does."""
    import asyncio

    served = deployments(where)
    names = ", ".join(f"{d.flow_name}/{d.name}" for d in served)
    runner = _runner(f"serving {names} (nightly: cron '{NIGHTLY_CRON}' UTC); `prefect deployment run FLOW/NAME` starts one now; SIGTERM or Ctrl-C stops")
    for deployment in served:
        runner.add_deployment(deployment)
    asyncio.run(runner.start())


def _runner(ready: str) -> Any:
    """Prefect's Runner, with the stop made bounded and the signal kept for the exit status;
    it prints `ready` once it has started (from then on a signal pauses the schedules)."""
    import asyncio
    import logging
    import signal

    from prefect.runner import Runner

    from flows.exits import Terminated, note_signal

    log = logging.getLogger(__name__)

    class BoundedRunner(Runner):  # type: ignore[misc]
        async def __aenter__(self) -> Any:
            entered = await super().__aenter__()
            print(ready, flush=True)  # the line a supervisor (or a test) waits for
            return entered

        def handle_sigterm(self, *args: Any, **kwargs: Any) -> None:
            note_signal(signal.SIGTERM)  # Prefect's handler replaces ours, and would exit 0
            if not self.started or self.stopping or self._loop is None:
                raise Terminated()  # not running yet, or a second SIGTERM: unwind now
            super().handle_sigterm(*args, **kwargs)

        async def cancel_all(self) -> None:
            # `astop` cancels the runs, then the polling loops: a server that does not answer
            # the cancellation must not keep the loops (and the command) running.
            try:
                await asyncio.wait_for(super().cancel_all(), CANCEL_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - the server is gone or slow: stop anyway
                log.warning("could not mark the flow runs in progress cancelled (%s); the server shows them as they were", type(exc).__name__)

        async def _pause_schedules(self) -> None:
            try:
                await asyncio.wait_for(super()._pause_schedules(), PAUSE_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - the server is gone or slow: stop anyway
                log.warning("could not pause the deployments' schedules (%s); they stay active on the server", type(exc).__name__)

    return BoundedRunner(pause_on_shutdown=True)


HEADER = """\
# Deployments of archive-colorizer for Prefect work pools, GENERATED from flows/serve.py
# (`make prefect-yaml`; tests/test_deployments.py checks this file is what it writes).
# Change the locations below to yours, or write your own with
#   python -c 'from flows.serve import *; print(prefect_yaml(Locations(...)))'
#
#   prefect work-pool create colorize-gpu --type kubernetes   # or: --type process
#   cd <project root> && prefect deploy --all --prefect-file infra/prefect.yaml
"""


def prefect_yaml(where: Locations = EXAMPLE) -> str:
    """infra/prefect.yaml for these locations."""
    import yaml

    entries = []
    for d in DEPLOYMENTS:
        entry: dict[str, Any] = {"name": d.name, "entrypoint": d.entrypoint, "description": d.description}
        if d.cron:
            entry["schedules"] = [{"cron": d.cron, "timezone": "UTC"}]
        params = d.all_parameters(where, on_pool=True)
        if params:
            entry["parameters"] = params
        entry["work_pool"] = {"name": d.work_pool, **({"job_variables": {"gpu_limit": d.gpus}} if d.gpus else {})}
        entries.append(entry)
    body = {
        "name": "archive-colorizer",
        # The worker's image has the project installed at /opt/colorize (infra/Dockerfile).
        "pull": [{"prefect.deployments.steps.set_working_directory": {"directory": "/opt/colorize"}}],
        "deployments": entries,
    }
    return HEADER + yaml.safe_dump(body, sort_keys=False, width=120)


if __name__ == "__main__":
    print(prefect_yaml(), end="")
