"""What this CPU can do for inference, and which CPU inference path that makes the default.

Paths: "plain" (fp32 eager PyTorch), "bf16" (PyTorch bf16 autocast: ~2x fp32 where the CPU has
native bf16, slower than fp32 where it does not) and "int8" (the model converted once to int8
with OpenVINO + NNCF and cached beside the checkpoint; see `cpu_openvino`). "auto" picks int8
for a model loaded from a checkpoint (faster than both on either kind of CPU, BENCHMARKS.md),
else bf16 on CPUs with native bf16 and fp32 on the others. COLORIZE_CPU_PATH overrides "auto".

The choice follows what the CPU has (/proc/cpuinfo flags), capped by what PyTorch and oneDNN
were told to use: ATEN_CPU_CAPABILITY=avx2 and ONEDNN_MAX_CPU_ISA=AVX2 make an AVX512-BF16
machine behave as an AVX2-only one (how the benchmarks emulate one), and the choice follows.
"""

from __future__ import annotations

import os
from functools import lru_cache

from colorize_core.settings import CPU_PATH, settings

CPU_PATH_ENV = CPU_PATH
CPU_PATHS = ("auto", "plain", "bf16", "int8")

# /proc/cpuinfo flag -> the name the benchmarks report it under.
_FLAGS = {
    "avx2": "avx2",
    "avx512f": "avx512f",
    "avx512_vnni": "avx512_vnni",
    "avx_vnni": "avx_vnni",
    "avx512_bf16": "avx512_bf16",
    "amx_bf16": "amx",
}


@lru_cache(maxsize=1)
def _cpuinfo_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo") as f:
            line = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return frozenset()
    return frozenset(line.partition(":")[2].split())


def cpu_flags() -> dict[str, bool]:
    """The instruction sets that matter here, as the CPU reports them (not capped)."""
    flags = _cpuinfo_flags()
    return {name: flag in flags for flag, name in _FLAGS.items()}


def isa_capped_to_avx2() -> bool:
    """True when PyTorch or oneDNN were told to stay at AVX2 (or below) on a bigger CPU."""
    onednn = os.environ.get("ONEDNN_MAX_CPU_ISA", os.environ.get("DNNL_MAX_CPU_ISA", "")).upper()
    if onednn and not onednn.startswith(("AVX512", "AVX10", "ALL", "DEFAULT")):
        return True
    try:
        import torch

        capability = torch.backends.cpu.get_cpu_capability()
    except Exception:  # an old torch without the query: trust the flags
        return False
    return capability.upper() in ("DEFAULT", "NO AVX", "AVX", "AVX2", "ZVECTOR", "VSX")


def native_bf16() -> bool:
    """bf16 instructions (AVX512-BF16 or AMX) that PyTorch is allowed to use: bf16 autocast is
    ~2x fp32 there and slower than fp32 without them."""
    flags = cpu_flags()
    return (flags["avx512_bf16"] or flags["amx"]) and not isa_capped_to_avx2()


def requested_cpu_path(option: str = "auto") -> str:
    """An explicit option wins; else COLORIZE_CPU_PATH; else "auto"."""
    choice = option if option != "auto" else settings().cpu_path
    if choice not in CPU_PATHS:
        raise ValueError(f"unknown CPU inference path {choice!r} ({CPU_PATH_ENV} or options); choose one of {', '.join(CPU_PATHS)}")
    return choice


def auto_cpu_path() -> str:
    """The PyTorch path for this CPU: bf16 where it has native bf16, else fp32 ("plain"). The
    int8 path, faster on both kinds, needs a model from a checkpoint (`Colorizer` decides)."""
    return "bf16" if native_bf16() else "plain"
