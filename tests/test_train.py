"""Training: the model can learn, resume is exact, checkpoints and triptychs appear."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from colorize_core.data.dataset import StepBatchSampler
from colorize_core.model.checkpoint import load_checkpoint, model_from_checkpoint
from colorize_core.model.color import rgb_to_yuv, yuv_to_rgb
from colorize_core.model.infer import PLAIN, Colorizer
from colorize_core.model.loss import BlurredUVLoss
from colorize_core.model.models import ModelConfig, build_model
from colorize_core.training.train import TrainConfig, gray_and_target, train


def _cfg(photo_dir: Path, out: Path, **kw: object) -> TrainConfig:
    base = TrainConfig(
        data=str(photo_dir),
        out=str(out),
        model=ModelConfig(image_size=32),
        backbone_weights="none",
        batch_size=4,
        steps=6,
        device="cpu",
        checkpoint_every=3,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


@pytest.mark.slow  # seconds of work: `make test`, not test-fast
@pytest.mark.parametrize("arch", ["residual_encoder", "hypercolumn"])
def test_overfitting_a_fixed_batch_drives_the_loss_down(photo_dir: Path, arch: str) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch=arch, image_size=32))  # type: ignore[arg-type]
    rgb = torch.stack([torch.from_numpy(np.asarray(Image.open(p).convert("RGB").crop((0, 0, 32, 32)), dtype=np.float32) / 255).permute(2, 0, 1) for p in sorted(photo_dir.iterdir())[:2]])
    gray, target = gray_and_target(rgb)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    loss_fn = BlurredUVLoss()
    losses = []
    for _ in range(40):
        loss = loss_fn(model(gray), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0], losses[::10]


def test_steps_zero_writes_an_untrained_checkpoint(photo_dir: Path, tmp_path: Path) -> None:
    result = train(_cfg(photo_dir, tmp_path / "m.safetensors", steps=0))
    ckpt = load_checkpoint(tmp_path / "m.safetensors")
    assert result.step == 0 and ckpt.meta["step"] == 0 and ckpt.model_id == result.model_id


@pytest.mark.slow  # seconds of work: `make test`, not test-fast
def test_resume_continues_at_the_same_step_with_the_same_state(photo_dir: Path, tmp_path: Path) -> None:
    kw = {"optimizer": "sgd", "momentum": 0.9, "lr": 0.01}
    straight = train(_cfg(photo_dir, tmp_path / "straight.safetensors", **kw), log_every=1)
    # An "interrupted" run: stops at step 3 with its checkpoint, then resumes to step 6.
    first = train(_cfg(photo_dir, tmp_path / "resumed.safetensors", steps=3, **kw), log_every=1)
    assert first.step == 3
    mid = load_checkpoint(tmp_path / "resumed.safetensors")
    assert mid.meta["step"] == 3 and mid.optim_state is not None
    assert all("momentum_buffer" in s for s in mid.optim_state["state"].values())
    resumed = train(_cfg(photo_dir, tmp_path / "resumed.safetensors", resume=True, **kw), log_every=1)
    assert resumed.step == 6
    a, b = load_checkpoint(straight.checkpoint), load_checkpoint(resumed.checkpoint)
    for name, t in a.model_state.items():
        assert torch.equal(t, b.model_state[name]), name
    assert a.model_id == b.model_id
    assert a.optim_state is not None and b.optim_state is not None
    for pid, entries in a.optim_state["state"].items():
        assert torch.equal(entries["momentum_buffer"], b.optim_state["state"][pid]["momentum_buffer"])
    assert len(a.meta["losses"]) == 6 and a.meta["losses"] == b.meta["losses"]


@pytest.mark.slow  # multi-second: make test only (test-fast stays under a minute)
def test_resume_without_a_checkpoint_starts_fresh_and_a_finished_run_stays(photo_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.safetensors"
    first = train(_cfg(photo_dir, out, steps=2, resume=True))
    again = train(_cfg(photo_dir, out, steps=2, resume=True))  # nothing left to do
    assert first.step == again.step == 2 and first.model_id == again.model_id


def test_resume_refuses_a_different_model(photo_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.safetensors"
    train(_cfg(photo_dir, out, steps=1))
    with pytest.raises(Exception, match="cannot resume"):
        train(_cfg(photo_dir, out, steps=2, resume=True, model=ModelConfig(arch="hypercolumn", image_size=32)))


@pytest.mark.slow  # multi-second: make test only (test-fast stays under a minute)
def test_triptychs_are_named_by_step_and_show_three_columns(photo_dir: Path, tmp_path: Path) -> None:
    result = train(_cfg(photo_dir, tmp_path / "m.safetensors", steps=4, val_every=2))
    names = [Path(p).name for p in result.triptychs]
    assert names == ["step_0000002.png", "step_0000004.png"]
    with Image.open(result.triptychs[-1]) as img:
        assert img.size == (3 * 32, 4 * 32)  # gray | colorized | truth, one row per validation photo


def test_a_bad_file_in_the_training_folder_is_skipped(photo_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for p in sorted(photo_dir.iterdir())[:3]:
        (data / p.name).write_bytes(p.read_bytes())
    (data / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    caplog.set_level(logging.WARNING, logger="colorize_core.data.dataset")
    result = train(_cfg(data, tmp_path / "m.safetensors", steps=3, batch_size=4))  # every file is drawn
    assert result.step == 3
    skipped = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipping training image")]
    assert len(skipped) == 1 and "broken.jpg" in skipped[0]  # skipped once, then never drawn again


def test_sampler_is_a_function_of_seed_and_step() -> None:
    full = list(StepBatchSampler(10, 4, seed=5, start_step=0, total_steps=8))
    tail = list(StepBatchSampler(10, 4, seed=5, start_step=5, total_steps=8))
    assert full[5:] == tail
    indices = [i for batch in full[:5] for i, _ in batch][:10]
    assert sorted(indices) == list(range(10))  # an epoch visits every sample once
    assert full != list(StepBatchSampler(10, 4, seed=6, start_step=0, total_steps=8))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 30), batch=st.integers(1, 9), seed=st.integers(0, 2**32 - 1), total=st.integers(1, 25), data=st.data(),
    blocks=st.one_of(st.none(), st.lists(st.integers(1, 6), min_size=1, max_size=8)), window=st.integers(1, 4),
)
def test_a_resumed_sampler_continues_exactly_where_any_step_left_off(
    n: int, batch: int, seed: int, total: int, data: st.DataObject, blocks: list[int] | None, window: int
) -> None:
    """Training resumed from a checkpoint at any step draws the batches (samples and their
    augmentation seeds) the uninterrupted run would have drawn from that step on; and every
    epoch visits every sample once."""
    if blocks is not None:
        n = sum(blocks)
    start = data.draw(st.integers(0, total), label="start")
    full = list(StepBatchSampler(n, batch, seed=seed, start_step=0, total_steps=total, blocks=blocks, window=window))
    resumed = list(StepBatchSampler(n, batch, seed=seed, start_step=start, total_steps=total, blocks=blocks, window=window))
    assert resumed == full[start:] and len(full) == total
    drawn = [i for b in full for i, _ in b]
    for epoch in range(len(drawn) // n):
        assert sorted(drawn[epoch * n : (epoch + 1) * n]) == list(range(n))


def test_triptych_leaves_the_training_model_as_it_was(photo_dir: Path, tmp_path: Path) -> None:
    from colorize_core.training.train import write_triptych

    model = build_model(ModelConfig(image_size=32)).train()
    truth = torch.rand(2, 3, 32, 32)
    write_triptych(tmp_path / "t.png", model, truth, torch.device("cpu"))
    assert model.training
    assert all(p.is_contiguous() for p in model.parameters())  # not converted to channels_last


@pytest.mark.slow  # seconds of work: `make test`, not test-fast
def test_channels_last_training_matches_contiguous(photo_dir: Path, tmp_path: Path) -> None:
    kw = {"optimizer": "adam", "lr": 1e-3, "steps": 3, "checkpoint_every": 100}
    nchw = train(_cfg(photo_dir, tmp_path / "nchw.safetensors", channels_last=False, **kw), log_every=1)
    nhwc = train(_cfg(photo_dir, tmp_path / "nhwc.safetensors", channels_last=True, **kw), log_every=1)
    # Same math in another memory layout: equal up to the order of float sums (bf16 autocast on
    # CPUs that have it, so the tolerance is bf16's).
    for (s1, a), (s2, b) in zip(nchw.losses, nhwc.losses):
        assert s1 == s2 and b == pytest.approx(a, rel=0.02)
    a_state, b_state = load_checkpoint(nchw.checkpoint).model_state, load_checkpoint(nhwc.checkpoint).model_state
    for name, t in a_state.items():
        assert b_state[name].is_contiguous()
        assert torch.allclose(t, b_state[name], atol=2e-2, rtol=0.05), name


@pytest.mark.slow  # multi-second: make test only (test-fast stays under a minute)
def test_the_loss_is_read_every_log_every_steps_and_at_the_end(photo_dir: Path, tmp_path: Path) -> None:
    seen: list[int] = []
    result = train(_cfg(photo_dir, tmp_path / "m.safetensors", steps=7), on_step=lambda info: seen.append(info.step), log_every=3)
    assert seen == [3, 6, 7] and [s for s, _ in result.losses] == [3, 6, 7]


def test_a_diverging_run_stops_with_a_clear_error(photo_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(FloatingPointError, match="lower --lr"):
        train(_cfg(photo_dir, tmp_path / "m.safetensors", optimizer="sgd", lr=1e30, steps=4), log_every=2)


@pytest.mark.slow
def test_compiled_training_matches_eager(photo_dir: Path, tmp_path: Path) -> None:
    kw = {"optimizer": "adam", "lr": 1e-3, "steps": 2, "checkpoint_every": 100, "channels_last": False}
    eager = train(_cfg(photo_dir, tmp_path / "eager.safetensors", **kw), log_every=1)
    compiled = train(_cfg(photo_dir, tmp_path / "compiled.safetensors", compile=True, **kw), log_every=1)
    assert [s for s, _ in compiled.losses] == [1, 2]
    for (_, a), (_, b) in zip(eager.losses, compiled.losses):
        assert b == pytest.approx(a, rel=0.02)
    a_state, b_state = load_checkpoint(eager.checkpoint).model_state, load_checkpoint(compiled.checkpoint).model_state
    assert a_state.keys() == b_state.keys()  # the checkpoint holds the plain model, not the compiled wrapper
    for name, t in a_state.items():
        assert torch.allclose(t, b_state[name], atol=2e-2, rtol=0.05), name


def test_a_diverged_model_is_never_checkpointed(photo_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.safetensors"
    with pytest.raises(FloatingPointError):
        # checkpoints every 2 steps, the loss read only every 50: the check before saving catches it
        train(_cfg(photo_dir, out, optimizer="sgd", lr=1e30, steps=6, checkpoint_every=2), log_every=50)
    assert not out.exists()


def test_loader_workers_default_to_none_on_cpu_and_some_on_cuda() -> None:
    from colorize_core.training.train import loader_workers

    assert loader_workers(None, torch.device("cpu")) == 0  # the model needs the cores
    assert 1 <= loader_workers(None, torch.device("cuda")) <= 8
    assert loader_workers(3, torch.device("cpu")) == 3 and loader_workers(0, torch.device("cuda")) == 0


@pytest.mark.slow  # multi-second: make test only (test-fast stays under a minute)
def test_a_model_resumes_with_the_padding_it_was_trained_with(photo_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.safetensors"
    old = _cfg(photo_dir, out, steps=3, model=ModelConfig(image_size=32, padding="zeros"))
    train(old)
    resumed = train(replace(old, steps=6, resume=True, model=ModelConfig(image_size=32, padding="replicate")))
    assert resumed.step == 6 and load_checkpoint(out).config.padding == "zeros"


def _scene_with_luma_colours(rng: np.random.Generator, n: int = 48) -> Image.Image:
    """A photo whose colour is a function of its brightness (dark blue, bright orange), over a
    smooth random luma field: colour a model can learn from luma alone, in a few steps."""
    yy, xx = np.mgrid[0:n, 0:n] / n
    y = np.full((n, n), 0.2)
    for _ in range(4):
        cx, cy, r, a = rng.random(), rng.random(), 0.1 + 0.3 * rng.random(), 0.3 + 0.5 * rng.random()
        y += a * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
    y = np.clip(y, 0.05, 0.95)
    yuv = torch.from_numpy(np.stack([y, 0.25 * (0.5 - y), -0.25 * (0.5 - y)])).float()
    return Image.fromarray((yuv_to_rgb(yuv).clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))


@pytest.mark.slow  # ~15 s of training: make test only
def test_a_trained_model_gives_the_true_colours_of_photos_it_never_saw(tmp_path: Path) -> None:
    """Training and inference end to end, judged against the truth: after 60 steps on photos
    whose colour follows their brightness, the colours of new photos of that kind come back
    (their chroma error a fraction of the gray image's, which an untrained model only matches)."""
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(24):
        _scene_with_luma_colours(rng).save(photos / f"s{i:02d}.png")
    cfg = _cfg(photos, tmp_path / "m.safetensors", steps=60, batch_size=8, checkpoint_every=60, optimizer="adam", lr=3e-3)
    train(cfg)
    colorizer = Colorizer(model_from_checkpoint(load_checkpoint(cfg.out)).eval(), device="cpu", options=PLAIN)
    model_err, gray_err = [], []
    for i in range(6):
        truth = rgb_to_yuv(torch.from_numpy(np.array(_scene_with_luma_colours(np.random.default_rng(100 + i)))).permute(2, 0, 1).float() / 255)
        out = colorizer.colorize_luma([truth[0].numpy()])[0]
        uv = rgb_to_yuv(torch.from_numpy(out).permute(2, 0, 1).float() / 255)[1:]
        model_err.append((uv - truth[1:]).abs().mean().item())
        gray_err.append(truth[1:].abs().mean().item())
    assert np.mean(model_err) < 0.35 * np.mean(gray_err), (np.mean(model_err), np.mean(gray_err))
