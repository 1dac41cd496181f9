"""Data-parallel training launched with torchrun: two CPU processes (gloo), checkpoints written
by rank 0 only, and resume works the same as in one process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from colorize_core.model.checkpoint import load_checkpoint


def _torchrun(photo_dir: Path, out: Path, steps: int, home: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "flows.cli", "train"]
    cmd += ["--data", str(photo_dir), "--out", str(out), "--image-size", "32", "--batch-size", "2", "--steps", str(steps)]
    cmd += ["--backbone-weights", "none", "--optimizer", "sgd", "--momentum", "0.9", "--lr", "0.01", "--device", "cpu", *extra]
    env = {**os.environ, "COLORIZE_HOME": str(home), "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.slow
def test_torchrun_two_processes_train_checkpoint_and_resume(photo_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp.safetensors"
    first = _torchrun(photo_dir, out, 2, tmp_path / "home")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "with 2 processes" in first.stdout
    ckpt = load_checkpoint(out)
    assert ckpt.meta["step"] == 2 and ckpt.meta["world_size"] == 2
    assert not any(k.startswith("module.") for k in ckpt.model_state)  # the inner model, not the DDP wrapper
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []
    resumed = _torchrun(photo_dir, out, 4, tmp_path / "home", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = load_checkpoint(out)
    assert after.meta["step"] == 4 and after.optim_state is not None
    assert (tmp_path / "home" / "registry" / "latest.json").is_file()
