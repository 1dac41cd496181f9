"""Multi-GPU data-parallel training (DDP) under `torchrun`: process group set-up, each rank's
slice of the global batch, and the few collective helpers the training loop needs.

Without torchrun's variables (WORLD_SIZE unset) everything here is a no-op for one process.
Launch: `torchrun --nproc_per_node 8 -m flows.cli train --data DATASET --out model.safetensors`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist
from torch.utils.data import Sampler

from colorize_core.model.device import resolve_device


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    started_here: bool = False  # this process initialised the group, so it tears it down

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def torchrun_rank() -> tuple[int, int]:
    """(rank, world size) torchrun gave this process (its RANK and WORLD_SIZE); (0, 1) when it
    was not launched by torchrun. Read here only."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def setup(device: str) -> tuple[DistInfo, torch.device]:
    """Join torchrun's process group if launched by it; returns this rank's info and device."""
    _, world = torchrun_rank()
    if world <= 1:
        return DistInfo(), resolve_device(device)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank)  # one GPU per process
        torch.cuda.set_device(dev)
    started = not torch_dist.is_initialized()
    if started:
        torch_dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(torch_dist.get_rank(), torch_dist.get_world_size(), local_rank, started), dev


def cleanup(info: DistInfo) -> None:
    if info.started_here and torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        torch_dist.barrier()


def mean_across(info: DistInfo, value: torch.Tensor) -> float:
    """The mean of a scalar over all ranks (for logging the global loss)."""
    if not info.enabled:
        return float(value.item())
    t = value.detach().float().clone().reshape(1)
    torch_dist.all_reduce(t)
    return float(t.item()) / info.world


def any_across(info: DistInfo, flag: bool, device: torch.device) -> bool:
    """True if any rank says True: every rank must stop at the same step, or the others hang."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    torch_dist.all_reduce(t, op=torch_dist.ReduceOp.MAX)
    return bool(t.item() > 0)


class RankSlices(Sampler[list]):
    """This rank's contiguous slice of each global batch from `batches`."""

    def __init__(self, batches: Sampler[list], rank: int, per_rank: int) -> None:
        self.batches, self.rank, self.per_rank = batches, rank, per_rank

    def __len__(self) -> int:
        return len(self.batches)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[list]:
        for batch in self.batches:
            yield batch[self.rank * self.per_rank : (self.rank + 1) * self.per_rank]
