"""The CPU fast path (issue 14): int8 through OpenVINO keeps the fp32 model's colours, is cached
by model id beside the checkpoint, is chosen by the CPU's features and can be switched off; a
missing optional dependency falls back to fp32 with one log line."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from colorize_core.archive.shards import colorize_shard
from colorize_core.archive.listing import list_images
from colorize_core.model import cpu_features, cpu_openvino
from colorize_core.model.checkpoint import load_model, save_checkpoint
from colorize_core.model.color import rgb_to_yuv
from colorize_core.model.infer import PLAIN, Colorizer, InferenceOptions, default_cache_dir
from colorize_core.model.models import ModelConfig, build_model
from colorize_core.storage.stores import open_store
from tests.conftest import make_photo

SIZE = 64  # the real architecture at a small working size
INT8 = InferenceOptions(cpu_path="int8")


def _photos(seed: int, n: int, h: int = 90, w: int = 120) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [make_photo(rng, h, w) for _ in range(n)]


def _gray(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(img.convert("L").resize((SIZE, SIZE), Image.Resampling.BILINEAR), dtype=np.float32) / 255.0)[None, None]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fixed-seed model whose batch norms carry real statistics (of photo-like inputs), so its
    activations have a trained model's scale and its colours are not one flat tint."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(image_size=SIZE), backbone_weights="none")
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the batches below
    model.train()
    with torch.no_grad():
        model(torch.cat([_gray(p) for p in _photos(1, 16)]))
    path = tmp_path_factory.mktemp("cpu-fast") / "model.safetensors"
    save_checkpoint(path, model.eval(), meta={"note": "cpu fast path test"})
    return path


def _needs_openvino() -> None:
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")


def _uv_and_psnr(out: Image.Image, truth: Image.Image) -> tuple[np.ndarray, float]:
    o = torch.from_numpy(np.asarray(out, dtype=np.float32) / 255.0).permute(2, 0, 1)
    t = torch.from_numpy(np.asarray(truth, dtype=np.float32) / 255.0).permute(2, 0, 1)
    psnr = float(10 * torch.log10(1.0 / ((o - t) ** 2).mean()))
    return rgb_to_yuv(o)[1:].numpy(), psnr


@pytest.mark.slow  # seconds of work: `make test`, not test-fast
def test_int8_keeps_the_colours_and_is_cached(checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _needs_openvino()
    photos = _photos(7, 4)
    grays = [p.convert("L") for p in photos]
    plain = Colorizer.from_checkpoint(checkpoint, device="cpu", batch_size=4, options=PLAIN)
    fast = Colorizer.from_checkpoint(checkpoint, device="cpu", batch_size=4, options=INT8)
    assert (plain.cpu_path, fast.cpu_path) == ("plain", "int8")
    ref, got = plain.colorize(grays), fast.colorize(grays)
    duv, dpsnr = [], []
    for r, g, truth in zip(ref, got, photos):
        uv_r, psnr_r = _uv_and_psnr(r, truth)
        uv_g, psnr_g = _uv_and_psnr(g, truth)
        duv.append(np.abs(uv_g - uv_r).mean(axis=(1, 2)) * 255.0)
        dpsnr.append(psnr_g - psnr_r)
        assert np.asarray(g.convert("L"), dtype=float) == pytest.approx(np.asarray(r.convert("L"), dtype=float), abs=1.5)
    mean_duv = np.mean(duv, axis=0)
    print(f"int8 vs fp32: mean |dU|, |dV| = {mean_duv} /255, PSNR delta {np.mean(dpsnr):+.3f} dB")
    assert mean_duv[0] < 2.0 and mean_duv[1] < 2.0, f"mean |dU|, |dV| = {mean_duv} /255"
    assert abs(float(np.mean(dpsnr))) < 0.2, f"PSNR moved by {np.mean(dpsnr):.3f} dB"
    # Not degenerate: the fp32 model's colours vary over each photo, so the comparison means something.
    spread = min(float(_uv_and_psnr(r, t)[0].std(axis=(1, 2)).min()) for r, t in zip(ref, photos)) * 255.0
    assert spread > 2.0, f"fp32 chroma spread only {spread:.2f}/255"

    cached = cpu_openvino.cache_path(default_cache_dir(checkpoint), fast.model_id, SIZE)
    assert cached.is_file() and cached.with_suffix(".bin").is_file()
    assert cached.parent == checkpoint.parent / ".colorize-cache"

    def no_conversion(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cached int8 model should have been used")

    monkeypatch.setattr(cpu_openvino, "convert", no_conversion)
    again = Colorizer.from_checkpoint(checkpoint, device="cpu", batch_size=4, options=INT8)
    x = torch.cat([_gray(p) for p in photos])
    # The same int8 model (compiled from the saved IR: a few values round the other way).
    assert (again.predict_uv(x) - fast.predict_uv(x)).abs().mean() < 0.5 / 255.0


@pytest.mark.slow  # seconds of work: `make test`, not test-fast
def test_auto_takes_int8_for_checkpoints_and_the_cpus_own_path_otherwise(checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(cpu_features.CPU_PATH_ENV, raising=False)
    model = build_model(ModelConfig(image_size=SIZE))
    for bf16, torch_path in ((True, "bf16"), (False, "plain")):
        monkeypatch.setattr(cpu_features, "native_bf16", lambda bf16=bf16: bf16)
        assert cpu_features.auto_cpu_path() == torch_path
        # Never for a model not loaded from a checkpoint (it may still be training).
        unconverted = Colorizer(model, device="cpu")
        assert unconverted.cpu_path == torch_path and unconverted.amp_dtype == (torch.bfloat16 if bf16 else None)
        # A cache folder says where converted models go, not that this one's weights are fixed.
        assert Colorizer(load_model(checkpoint), device="cpu", cache_dir=checkpoint.parent).cpu_path == torch_path
        # Off by option, by environment variable, and when fp32 is asked for.
        assert Colorizer.from_checkpoint(checkpoint, device="cpu", options=PLAIN).cpu_path == "plain"
        assert Colorizer.from_checkpoint(checkpoint, device="cpu", options=InferenceOptions(mixed_precision=False)).cpu_path == "plain"
        monkeypatch.setenv(cpu_features.CPU_PATH_ENV, "plain")
        assert Colorizer.from_checkpoint(checkpoint, device="cpu").cpu_path == "plain"
        monkeypatch.delenv(cpu_features.CPU_PATH_ENV)
    monkeypatch.setenv(cpu_features.CPU_PATH_ENV, "fast-please")
    with pytest.raises(ValueError, match="unknown CPU inference path"):
        Colorizer.from_checkpoint(checkpoint, device="cpu")


@pytest.mark.slow  # seconds of work: `make test`, not test-fast
@pytest.mark.parametrize("bf16", [False, True])
def test_auto_uses_the_int8_path_for_a_checkpoint_on_either_cpu(checkpoint: Path, monkeypatch: pytest.MonkeyPatch, bf16: bool) -> None:
    _needs_openvino()
    monkeypatch.delenv(cpu_features.CPU_PATH_ENV, raising=False)
    monkeypatch.setattr(cpu_features, "native_bf16", lambda: bf16)
    fast = Colorizer.from_checkpoint(checkpoint, device="cpu")
    assert fast.cpu_path == "int8" and fast.amp_dtype is None


def test_isa_caps_count_as_an_avx2_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert cpu_features.isa_capped_to_avx2() and not cpu_features.native_bf16()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")
    assert not cpu_features.isa_capped_to_avx2()
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")  # ATEN_CPU_CAPABILITY=avx2
    assert cpu_features.isa_capped_to_avx2() and not cpu_features.native_bf16()


def test_a_failed_conversion_falls_back_under_auto_and_fails_when_asked_for(
    checkpoint: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(cpu_features.CPU_PATH_ENV, raising=False)
    monkeypatch.setattr(cpu_openvino, "available", lambda: None)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the converter met an op it does not know\nmore detail")

    monkeypatch.setattr(cpu_openvino, "load_or_convert", broken)
    with caplog.at_level(logging.INFO, logger="colorize_core"):
        auto = Colorizer.from_checkpoint(checkpoint, device="cpu")
    assert auto.cpu_path == cpu_features.auto_cpu_path()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "int8 CPU path failed" in warnings[0] and "more detail" not in warnings[0]
    with pytest.raises(RuntimeError, match="does not know"):
        Colorizer.from_checkpoint(checkpoint, device="cpu", options=INT8)


@pytest.mark.slow  # seconds of work: `make test`, not test-fast
def test_an_archive_shard_runs_the_int8_path_under_auto(checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _needs_openvino()
    monkeypatch.delenv(cpu_features.CPU_PATH_ENV, raising=False)
    src = tmp_path / "bw"
    src.mkdir()
    for i, photo in enumerate(_photos(11, 3)):
        photo.convert("L").save(src / f"p{i}.png")
    colorizer = Colorizer.from_checkpoint(checkpoint, device="cpu", batch_size=2)
    assert colorizer.cpu_path == "int8"
    items = list_images(open_store(str(src)))
    outcome = colorize_shard(str(src), str(tmp_path / "out"), items, colorizer, run_id="r1", shard=0)
    assert outcome.counts == {"ok": 3}
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["p0.png", "p1.png", "p2.png"]


def test_missing_dependency_falls_back_with_one_line(checkpoint: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(cpu_openvino, "available", lambda: "openvino")
    with caplog.at_level(logging.INFO, logger="colorize_core"):
        fast = Colorizer.from_checkpoint(checkpoint, device="cpu", batch_size=2, options=InferenceOptions(cpu_path="int8", mixed_precision=False))
    assert fast.cpu_path == "plain"
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1 and "openvino" in lines[0].getMessage()
    plain = Colorizer.from_checkpoint(checkpoint, device="cpu", batch_size=2, options=PLAIN)
    x = torch.rand(2, 1, SIZE, SIZE)
    assert torch.allclose(fast.predict_uv(x), plain.predict_uv(x), atol=1e-5)


def test_cache_dir_for_object_storage_goes_under_colorize_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLORIZE_HOME", str(tmp_path))
    assert default_cache_dir("s3://bucket/models/m.safetensors") == tmp_path / "cache"
    assert default_cache_dir(tmp_path / "m.safetensors") == tmp_path / ".colorize-cache"


@pytest.mark.slow  # seconds of work: `make test`, not test-fast
def test_openvino_and_nncf_send_no_telemetry() -> None:
    """Both send usage data to Google Analytics unless told not to; this tool phones nowhere.
    The block goes in when OpenVINO is first imported, not by importing this package (a process
    that never takes the int8 path keeps sys.modules as it was)."""
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    code = (
        "import sys, colorize_core.model.infer, colorize_core.model.cpu_openvino as m\n"
        "print('openvino_telemetry' in sys.modules)\n"  # importing the package changes no module table
        "assert m.available() is None\n"  # how the int8 path first imports them
        "import nncf.telemetry.wrapper as w, openvino.tools.ovc.convert_impl as c\n"
        "print(c.tm.__name__, isinstance(w.telemetry, w.NNCFTelemetry))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "NNCF_CI", "NNCF_DEV")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout.split()
    assert out == ["False", "openvino.tools.ovc.telemetry_stub", "False"]


