"""Every environment variable colorize reads, defined once: its name, its default, what it
means and what reads it (`VARIABLES`, which the README's table repeats; a test holds them
equal), and `Settings`, all of them read and checked at once.

A wrong value is an error that names the variable when it is read, not a ValueError from deep
inside a run. Variables of other tools (Prefect's PREFECT_*, boto3's AWS_*, torchrun's
WORLD_SIZE/RANK/LOCAL_RANK, oneDNN's ONEDNN_MAX_CPU_ISA) are theirs and documented there.

Torch-free and Prefect-free: every layer may import it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

HOME = "COLORIZE_HOME"
CHECKPOINT = "COLORIZE_CHECKPOINT"
RETRY_SECONDS = "COLORIZE_RETRY_SECONDS"
CPU_PATH = "COLORIZE_CPU_PATH"
CPU_CALIBRATION = "COLORIZE_CPU_CALIBRATION"
SERVE_SOURCE = "COLORIZE_SOURCE"
SERVE_DEST = "COLORIZE_DEST"
SERVE_PHOTOS = "COLORIZE_PHOTOS"
SERVE_DATASET = "COLORIZE_DATASET"
SERVE_CHECKPOINT = "COLORIZE_CHECKPOINT_URI"
C2PA_CERT = "COLORIZE_C2PA_CERT"
C2PA_KEY = "COLORIZE_C2PA_KEY"
C2PA_TSA = "COLORIZE_C2PA_TSA"

DEFAULT_RETRY_SECONDS = 300.0


@dataclass(frozen=True)
class Variable:
    name: str
    default: str  # as the README says it
    meaning: str
    read_by: str


VARIABLES: tuple[Variable, ...] = (
    Variable(HOME, "`~/.colorize`", "this machine's model registry (`registry/`), log file (`logs/`) and converted-model cache (`cache/`)", "every command; `Colorizer`'s cache, the registry, the log"),
    Variable(CHECKPOINT, "none (`archive`: `latest`)", "the model a colorizing command uses when `--checkpoint` is not given", "`colorize images`, `eval`, `archive`"),
    Variable(RETRY_SECONDS, "300", "how long an object-store call retries transient errors (seconds)", "every object-store call (storage/errors.py)"),
    Variable(CPU_PATH, "`auto`", "the CPU inference path: `auto`, `plain`, `bf16` or `int8` (see \"Speed\")", "`Colorizer` on a CPU"),
    Variable(CPU_CALIBRATION, "scikit-image's photos", "a folder of photos to calibrate the int8 model on", "the int8 conversion (model/cpu_calibration.py)"),
    Variable(SERVE_SOURCE, "`archive`", "the black-and-white archive the nightly deployment colorizes", "`colorize serve`"),
    Variable(SERVE_DEST, "`colorized`", "where the nightly deployment writes", "`colorize serve`"),
    Variable(SERVE_PHOTOS, "`photos`", "the colour photos the dataset deployment builds from", "`colorize serve`"),
    Variable(SERVE_DATASET, "`dataset`", "the training set the dataset deployment writes and training reads", "`colorize serve`"),
    Variable(SERVE_CHECKPOINT, "`models/model.safetensors`", "where the training deployment writes its model (not what commands colorize with: that is COLORIZE_CHECKPOINT)", "`colorize serve`"),
    Variable(C2PA_CERT, "none (outputs unsigned)", "the PEM certificate chain that signs outputs' Content Credentials (with COLORIZE_C2PA_KEY)", "`colorize images`, `archive` (`--c2pa-cert`)"),
    Variable(C2PA_KEY, "none", "the private key of COLORIZE_C2PA_CERT's certificate (PEM, unencrypted)", "`colorize images`, `archive` (`--c2pa-key`)"),
    Variable(C2PA_TSA, "none (no timestamp)", "a timestamp authority's URL for the signatures (an online one: none when offline)", "`colorize images`, `archive` (`--c2pa-tsa`)"),
)


class SettingsError(ValueError):
    """An environment variable with a value colorize cannot use."""


@dataclass(frozen=True)
class Settings:
    home: Path
    checkpoint: str | None
    retry_seconds: float
    cpu_path: str  # lower case; model/cpu_features.py checks it is a known path
    cpu_calibration: str | None
    serve_source: str
    serve_dest: str
    serve_photos: str
    serve_dataset: str
    serve_checkpoint: str
    c2pa_cert: str | None
    c2pa_key: str | None
    c2pa_tsa: str | None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read every variable (an empty one counts as unset) and check each value."""
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        return cls(
            home=Path(get(HOME) or Path.home() / ".colorize"),
            checkpoint=get(CHECKPOINT),
            retry_seconds=_seconds(RETRY_SECONDS, get(RETRY_SECONDS)),
            cpu_path=(get(CPU_PATH) or "auto").lower(),
            cpu_calibration=get(CPU_CALIBRATION),
            serve_source=get(SERVE_SOURCE) or "archive",
            serve_dest=get(SERVE_DEST) or "colorized",
            serve_photos=get(SERVE_PHOTOS) or "photos",
            serve_dataset=get(SERVE_DATASET) or "dataset",
            serve_checkpoint=get(SERVE_CHECKPOINT) or "models/model.safetensors",
            c2pa_cert=get(C2PA_CERT),
            c2pa_key=get(C2PA_KEY),
            c2pa_tsa=get(C2PA_TSA),
        )


def _seconds(name: str, value: str | None) -> float:
    if value is None:
        return DEFAULT_RETRY_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        raise SettingsError(f"{name}={value!r} is not a number of seconds") from None
    if not seconds >= 0 or seconds == float("inf"):  # NaN too
        raise SettingsError(f"{name}={value!r}: give 0 or more seconds")
    return seconds


def settings() -> Settings:
    """The environment's settings now. Cheap (ten lookups): library code that runs where no
    entry point handed it settings (a flow run on a worker) reads them here."""
    return Settings.from_env()


def colorize_home() -> Path:
    return settings().home
