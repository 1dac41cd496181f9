"""Inference's defaults, defined once and free of heavy imports (the command line offers them in
its help without importing torch)."""

from __future__ import annotations

# Images per forward pass when none is asked for: on CPU more only adds latency; on CUDA a 224 px
# batch of 64 needs a few GB in bf16 and keeps the GPU busy.
CPU_BATCH_SIZE = 8
CUDA_BATCH_SIZE = 64
BATCH_SIZE_HELP = f"images per forward pass (default: {CPU_BATCH_SIZE} on CPU, {CUDA_BATCH_SIZE} on CUDA)"
