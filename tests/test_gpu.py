"""CUDA checks (marker `gpu`): skipped without a GPU; run by bench/gpu_check.sh on a GPU machine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from colorize_core.model.checkpoint import load_model
from colorize_core.model.infer import PLAIN, Colorizer, InferenceOptions
from colorize_core.model.loss import BlurredUVLoss
from colorize_core.model.models import ModelConfig, build_model
from tests.conftest import make_photo

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_cuda_fast_path_matches_fp32(tiny_checkpoint: Path) -> None:
    gray = torch.rand(5, 1, 32, 32)
    plain = Colorizer(load_model(tiny_checkpoint), device="cuda", batch_size=8, options=PLAIN)
    fast = Colorizer(load_model(tiny_checkpoint), device="cuda", batch_size=8, options=InferenceOptions())
    assert fast.amp_dtype in (torch.bfloat16, torch.float16)
    assert (plain.predict_uv(gray) - fast.predict_uv(gray)).abs().max().item() < 0.02


def test_cuda_compiled_path_matches_eager(tiny_checkpoint: Path) -> None:
    gray = torch.rand(4, 1, 32, 32)
    eager = Colorizer(load_model(tiny_checkpoint), device="cuda", batch_size=4, options=InferenceOptions())
    compiled = Colorizer(load_model(tiny_checkpoint), device="cuda", batch_size=4, options=InferenceOptions(compile=True))
    assert (eager.predict_uv(gray) - compiled.predict_uv(gray)).abs().max().item() < 0.02


def test_cuda_colorizer_keeps_luma(tiny_checkpoint: Path) -> None:
    rng = np.random.default_rng(0)
    images = [make_photo(rng, 37, 53).convert("L"), make_photo(rng, 300, 7).convert("L")]
    for src, out in zip(images, Colorizer.from_checkpoint(tiny_checkpoint, device="cuda").colorize(images)):
        assert np.abs(np.asarray(out.convert("L"), int) - np.asarray(src, int)).max() <= 1


@pytest.mark.parametrize("arch", ["residual_encoder", "hypercolumn"])
def test_cuda_training_steps_with_autocast_reduce_the_loss(arch: str) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch=arch, image_size=32)).cuda().train()  # type: ignore[arg-type]
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    gray, target = torch.rand(4, 1, 32, 32, device="cuda"), torch.rand(4, 2, 32, 32, device="cuda")
    loss_fn, losses = BlurredUVLoss().cuda(), []
    for _ in range(30):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            pred = model(gray)
        loss = loss_fn(pred, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all() and losses[-1] < losses[0]


def test_nvjpeg_shard_matches_the_cpu_device_path(jpeg_archive: str, tmp_path: Path, tiny_checkpoint: Path) -> None:
    """nvJPEG decode + CUDA colorize + nvJPEG encode against the same code on CPU (libjpeg-turbo)."""
    from colorize_core.archive.history import read_output_rows
    from colorize_core.archive.shards import colorize_shard
    from colorize_core.archive.listing import list_images
    from colorize_core.storage.stores import open_store
    from tests.conftest import luma_of

    items = list_images(open_store(jpeg_archive))
    cpu = Colorizer.from_checkpoint(tiny_checkpoint, device="cpu", batch_size=4, options=PLAIN)
    gpu = Colorizer.from_checkpoint(tiny_checkpoint, device="cuda", batch_size=4, options=PLAIN)
    a = colorize_shard(jpeg_archive, str(tmp_path / "cpu"), items, cpu, run_id="r", shard=0, device_jpeg=True)
    b = colorize_shard(jpeg_archive, str(tmp_path / "gpu"), items, gpu, run_id="r", shard=0)  # auto: on for CUDA
    assert a.counts == b.counts
    rows_a = {r["key"]: r for r in read_output_rows(str(tmp_path / "cpu"))}
    for r in read_output_rows(str(tmp_path / "gpu")):
        ra = rows_a[r["key"]]
        assert (r["status"], r["error"], r["width"], r["height"]) == (ra["status"], ra["error"], ra["width"], ra["height"]), r["key"]
        if r["status"] == "ok":
            src = luma_of(open_store(jpeg_archive).read(r["key"]))
            out = luma_of((tmp_path / "gpu" / r["output_key"]).read_bytes())
            assert out.shape == src.shape and np.abs(out - src).mean() < 2.0, r["key"]
            assert abs(r["colourfulness"] - ra["colourfulness"]) < 3.0, r["key"]
