"""Which way a model runs on a CPU: fp32 ("plain"), bf16 autocast, or int8 (a model converted by
OpenVINO, cpu_openvino.py), and what happens when the int8 path cannot be had. The policy, in
one place; `Colorizer` (infer.py) only runs what it is given.

"auto" (or COLORIZE_CPU_PATH): int8 for a model whose weights are fixed, one loaded from a
checkpoint (measured 2.2x fp32 on an AVX2-only CPU and 1.85x bf16 autocast on one with bf16,
colours closer to fp32 than bf16's); bf16 where the CPU has it natively; else fp32. A model that
may still be changing (validation during training) is never converted: converting it would cost
more than it saves. Under "auto" a missing or failing converter falls back with one log line (a
speed-up must not fail the night's run); asked for by name, int8 fails loudly.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from colorize_core.model.cpu_features import auto_cpu_path, requested_cpu_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CpuPath:
    name: str  # "plain" | "bf16" | "int8"
    runner: Callable[[torch.Tensor], torch.Tensor] | None = None  # int8: the converted model, in place of the torch forward


def choose_cpu_path(
    model: nn.Module,
    *,
    option: str,
    mixed_precision: bool,
    fixed_weights: bool,
    model_id: str,
    image_size: int,
    cache_dir: str | os.PathLike[str] | None,
) -> CpuPath:
    """The path for `model`. `option`: "auto" (then COLORIZE_CPU_PATH decides) or a path's name;
    `mixed_precision` False asks for fp32 under "auto"; `fixed_weights`: the model came from a
    checkpoint, so converting it pays; `cache_dir`: where a converted model is kept (by model id),
    None to convert in memory."""
    requested = requested_cpu_path(option)
    if requested == "auto" and not mixed_precision:
        return CpuPath("plain")  # fp32 asked for
    fallback = auto_cpu_path() if mixed_precision else "plain"  # what runs without int8
    choice = requested
    if choice == "auto":
        choice = "int8" if fixed_weights else fallback
    if choice != "int8":
        return CpuPath(choice)
    from colorize_core.model import cpu_openvino

    missing = cpu_openvino.available()
    if missing:
        log.warning("int8 CPU path unavailable (%s not installed: pip install 'archive-colorizer[cpu]'); running %s", missing, fallback)
        return CpuPath(fallback)
    try:
        runner = cpu_openvino.load_or_convert(model, image_size, cache_dir=cache_dir, model_id=model_id)
    except Exception as exc:  # noqa: BLE001 - a speed-up that fails must not fail the night's run
        if requested == "int8":
            raise
        log.warning("int8 CPU path failed for model %s (%s); running %s", model_id, str(exc).splitlines()[0] if str(exc) else type(exc).__name__, fallback)
        log.debug("int8 conversion failure", exc_info=exc)
        return CpuPath(fallback)
    return CpuPath("int8", runner)
