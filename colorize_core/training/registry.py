"""Where trained models are registered, so a nightly run can ask for "the latest model".

A registry is a store prefix (local or s3://): `models/<model_id>.json` per model and
`latest.json` pointing at the newest. The default is `$COLORIZE_HOME/registry` (`~/.colorize`);
`colorize models` lists it.
"""

from __future__ import annotations

import json
import time
from typing import Any

from colorize_core.settings import colorize_home
from colorize_core.storage.objects import ObjectNotFound
from colorize_core.storage.stores import open_store

LATEST = "latest"


def default_registry() -> str:
    return str(colorize_home() / "registry")


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


def list_models(*, registry: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """Every registered model's entry, newest first, and the latest one's model id (None when
    nothing is registered). A missing registry is an empty one: nothing was trained here yet."""
    store = open_store(registry or default_registry())
    keys = [info.key for info in store.list("models/") if info.key.endswith(".json")]
    entries = [json.loads(store.read(key)) for key in keys]
    entries.sort(key=lambda e: float(e.get("registered_at", 0.0)), reverse=True)
    try:
        latest = str(json.loads(store.read("latest.json"))["model_id"])
    except ObjectNotFound:
        latest = None
    return entries, latest
