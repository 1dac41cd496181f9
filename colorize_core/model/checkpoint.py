"""The checkpoint format: one safetensors file with the weights, the model config, metadata and
(optionally) optimiser state. Loading never unpickles anything; saving is atomic.

Layout: tensors `model.<name>` and `optim.<param>.<key>`; the header's string metadata holds
`format`, `format_version`, `config` (JSON), `model_id`, `meta` (JSON) and `optim` (JSON: the
optimiser's param groups and non-tensor state). The model id is a hash of the model tensors, so
the same weights always have the same id and any change to them gives a new one.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from colorize_core.model.models import ModelConfig, build_model
from colorize_core.storage.objects import ObjectNotFound
from colorize_core.storage.stores import split_uri

FORMAT = "archive-colorizer/checkpoint"
FORMAT_VERSION = "1"


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, truncated, corrupt or not ours; the message says which."""


@dataclass
class Checkpoint:
    config: ModelConfig
    model_state: dict[str, torch.Tensor]
    model_id: str
    meta: dict[str, Any] = field(default_factory=dict)
    optim_state: dict[str, Any] | None = None


def compute_model_id(config: ModelConfig, state: dict[str, torch.Tensor]) -> str:
    """`<arch>-<12 hex>`: sha256 over the tensor names, dtypes, shapes and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return f"{config.arch}-{h.hexdigest()[:12]}"


def _split_optim(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for pid, entries in state["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{pid}.{key}"] = value.detach().cpu().contiguous()
            else:
                plain.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "plain_state": plain}


def _join_optim(tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        _, pid, key = name.split(".", 2)
        state.setdefault(int(pid), {})[key] = value
    for pid, entries in info["plain_state"].items():
        state.setdefault(int(pid), {}).update(entries)
    return {"state": state, "param_groups": info["param_groups"]}


def save_checkpoint(
    path: str | os.PathLike[str],  # a path, file:// or s3:// URI
    model: nn.Module,
    *,
    meta: dict[str, Any] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
) -> str:
    """Write model (+ optimiser) to `path` atomically; returns the model id."""
    config: ModelConfig = model.config  # type: ignore[assignment]
    model_state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    model_id = compute_model_id(config, model_state)
    tensors = {f"model.{k}": v for k, v in model_state.items()}
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": json.dumps(config.to_dict()),
        "model_id": model_id,
        "meta": json.dumps(meta or {}),
    }
    if optimizer is not None:
        optim_tensors, optim_info = _split_optim(optimizer.state_dict())
        tensors.update(optim_tensors)
        header["optim"] = json.dumps(optim_info)
    blob = st_save(tensors, metadata=header)
    store, key = split_uri(os.fspath(path))
    store.write(key, blob)  # atomic on both stores
    return model_id


def _read_header(data: bytes, path: str) -> dict[str, str]:
    # The header is an 8-byte little-endian length followed by that much JSON.
    if len(data) < 8:
        raise CheckpointError(f"{path}: truncated checkpoint ({len(data)} bytes)")
    n = int.from_bytes(data[:8], "little")
    if n <= 0 or 8 + n > len(data):
        raise CheckpointError(f"{path}: not a safetensors checkpoint, or truncated (header claims {n} bytes)")
    try:
        header = json.loads(data[8 : 8 + n])
        if not isinstance(header, dict):
            raise ValueError("not an object")
    except ValueError:
        raise CheckpointError(f"{path}: not a checkpoint (unreadable header)") from None
    meta = header.get("__metadata__")
    return meta if isinstance(meta, dict) else {}


def _read_checkpoint_bytes(uri: str) -> bytes:
    store, key = split_uri(uri)
    try:
        return store.read(key)
    except ObjectNotFound:
        raise CheckpointError(f"checkpoint not found: {uri}") from None


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint's header says, read without its weights."""

    uri: str
    model_id: str
    step: int | None  # optimiser steps `train` ran; None when the file does not say
    meta: dict[str, Any]


class UntrainedModelError(CheckpointError):
    """A checkpoint that never trained (0 steps): its colours are noise, not a guess."""


def read_checkpoint_info(path: str | os.PathLike[str]) -> CheckpointInfo:
    """A checkpoint's header alone (two small ranged reads, not the ~40 MB of weights): what
    planning needs. Not verified against the weights; loading the model does that.
    The header's length is checked against the file's size before anything is read: random
    bytes must not make us allocate what their first 8 bytes claim."""
    p = os.fspath(path)
    store, key = split_uri(p)
    try:
        size = store.size(key)
        head = store.read_range(key, 0, 8)
        if len(head) < 8:
            raise CheckpointError(f"{p}: truncated checkpoint ({size} bytes)")
        n = int.from_bytes(head, "little")
        if n <= 0 or 8 + n > size:
            raise CheckpointError(f"{p}: not a safetensors checkpoint, or truncated (header claims {n} bytes of a {size}-byte file)")
        header = _read_header(head + store.read_range(key, 8, n), p)
    except ObjectNotFound:
        raise CheckpointError(f"checkpoint not found: {p}") from None
    if header.get("format") != FORMAT or not header.get("model_id"):
        raise CheckpointError(f"{p}: not an archive-colorizer checkpoint (a foreign file with no '{FORMAT}' header)")
    try:
        meta = json.loads(header.get("meta", "{}"))
    except ValueError:
        raise CheckpointError(f"{p}: corrupt checkpoint metadata (unreadable 'meta')") from None
    meta = meta if isinstance(meta, dict) else {}
    step = meta.get("step")
    return CheckpointInfo(p, header["model_id"], int(step) if isinstance(step, int) else None, meta)


def read_model_id(path: str | os.PathLike[str]) -> str:
    """A checkpoint's model id from its header alone (see `read_checkpoint_info`)."""
    return read_checkpoint_info(path).model_id


def require_trained(info: CheckpointInfo, *, allow_untrained: bool = False) -> None:
    """Refuse to colorize with a model that never trained: an untrained model's colours are
    noise, and an archive must not receive them by accident (`train --steps 0` writes one)."""
    if info.step == 0 and not allow_untrained:
        raise UntrainedModelError(
            f"model {info.model_id} ({info.uri}) was never trained (0 steps): train it with `colorize train`, "
            "or pass --allow-untrained if noise is what you want"
        )


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read and verify a checkpoint (a path, file:// or s3:// URI); raises `CheckpointError`
    saying what is wrong."""
    p = os.fspath(path)
    data = _read_checkpoint_bytes(p)
    meta = _read_header(data, str(p))
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{p}: not an archive-colorizer checkpoint (a foreign file with no '{FORMAT}' header)")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{p}: checkpoint format version {meta.get('format_version')!r} is not supported")
    try:
        tensors = st_load(data)
    except SafetensorError as exc:
        raise CheckpointError(f"{p}: truncated or corrupt checkpoint: {exc}") from None
    try:
        config = ModelConfig.from_dict(json.loads(meta["config"]))
    except (KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{p}: bad model config in checkpoint: {exc}") from None
    model_state = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    model_id = compute_model_id(config, model_state)
    if model_id != meta.get("model_id"):
        raise CheckpointError(f"{p}: corrupt checkpoint: weights hash to {model_id}, header says {meta.get('model_id')}")
    try:
        optim_state = None
        if "optim" in meta:
            optim_tensors = {k: v for k, v in tensors.items() if k.startswith("optim.")}
            optim_state = _join_optim(optim_tensors, json.loads(meta["optim"]))
        return Checkpoint(config, model_state, model_id, json.loads(meta.get("meta", "{}")), optim_state)
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{p}: corrupt checkpoint metadata: {exc}") from None


def model_from_checkpoint(ckpt: Checkpoint) -> nn.Module:
    """Rebuild the model a checkpoint describes and load its weights (no backbone file needed)."""
    model = build_model(ckpt.config, backbone_weights="none")
    try:
        model.load_state_dict(ckpt.model_state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint weights do not fit a {ckpt.config.arch}: {exc}") from None
    model.model_id = ckpt.model_id  # type: ignore[assignment]
    return model


def load_model(path: str | os.PathLike[str]) -> nn.Module:
    """Path -> model in eval mode, with `.config` and `.model_id`."""
    return model_from_checkpoint(load_checkpoint(path)).eval()
