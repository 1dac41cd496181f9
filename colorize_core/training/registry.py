"""Where trained models are registered, so a nightly run can ask for "the latest model".

A registry is a store prefix (local or s3://): `models/<model_id>.json` per model and
`latest.json` pointing at the newest. The default is `$COLORIZE_HOME/registry` (`~/.colorize`).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from colorize_core.storage.stores import ObjectNotFound, open_store

LATEST = "latest"


def default_registry() -> str:
    home = os.environ.get("COLORIZE_HOME") or str(Path.home() / ".colorize")
    return str(Path(home) / "registry")


def register_model(checkpoint_uri: str, model_id: str, *, registry: str | None = None, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Record a finished checkpoint and make it the latest."""
    store = open_store(registry or default_registry())
    entry = {"model_id": model_id, "checkpoint": checkpoint_uri, "registered_at": time.time(), **(meta or {})}
    blob = json.dumps(entry, indent=2).encode()
    store.write(f"models/{model_id}.json", blob)
    store.write("latest.json", blob)
    return entry


def resolve_checkpoint(spec: str, *, registry: str | None = None) -> str:
    """A checkpoint URI, or "latest" -> the latest registered checkpoint's URI."""
    if spec != LATEST:
        return spec
    where = registry or default_registry()
    try:
        entry = json.loads(open_store(where).read("latest.json"))
    except ObjectNotFound:
        raise FileNotFoundError(f"no model registered in {where}: train one (colorize train / train-model flow) or pass a checkpoint") from None
    return str(entry["checkpoint"])
