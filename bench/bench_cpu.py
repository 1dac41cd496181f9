"""CPU inference paths side by side (issue 14), model only at the working size (224):

- plain: PyTorch fp32 eager, batch 1 (the reference for speed and for colours);
- torch-fast-fp32: fp32 eager, batch 8, channels_last (the old fast path on a CPU without bf16);
- torch-bf16: bf16 autocast, batch 8 (only where the CPU has native bf16);
- openvino-fp32, openvino-int8 (NNCF static quantization; the path `cpu_path="int8"` runs);
- onnxruntime-fp32, onnxruntime-int8 (QDQ static quantization), when onnxruntime is installed;
- pt2e-int8: torchao's PT2E flow with the X86 (oneDNN) quantizer, lowered by torch.compile.

For each: images/s at batch 1 and 8 (cases measured in turn, round after round, reporting the
median and the median of each round's ratio to plain, since the machine may be shared), the
conversion time, the peak RSS of a process that only loads, converts and runs that case
(VmHWM, one child process per case), and the colour error against fp32 on held-out
photos (../shared/data/photos-val when present, else synthetic): mean |dU|, |dV| in /255 and the
PSNR change. Int8 models are calibrated as the product calibrates them (scikit-image's bundled
photographs, or COLORIZE_CPU_CALIBRATION when set).
The int8 path's end-to-end cost (`Colorizer.colorize` on full-size photos vs `predict_uv` alone)
is measured too. JSON lines, each with machine() and the CPU flags; emulation (an AVX2 cap via
ONEDNN_MAX_CPU_ISA / ATEN_CPU_CAPABILITY) is reported in each line.

Run: `.venv/bin/python -m bench.bench_cpu [--rounds 5] [--cases plain,openvino-int8,...]`
Emulate an AVX2-only CPU: `ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 .venv/bin/python -m bench.bench_cpu`
(OpenVINO honours ONEDNN_MAX_CPU_ISA; onnxruntime has no such cap: its figures are native).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.common import SHARED, machine, smooth_photo
from colorize_core.model import cpu_openvino
from colorize_core.model.checkpoint import load_model, save_checkpoint
from colorize_core.model.color import rgb_to_yuv, unit_to_uv, uv_to_unit, yuv_to_rgb_in_gamut
from colorize_core.model.cpu_calibration import calibration_batch
from colorize_core.model.cpu_features import cpu_flags, isa_capped_to_avx2, native_bf16
from colorize_core.model.infer import PLAIN, Colorizer, InferenceOptions, _shrink
from colorize_core.model.models import ModelConfig, build_model

ALL_CASES = ("plain", "torch-fast-fp32", "torch-bf16", "openvino-fp32", "openvino-int8", "onnxruntime-fp32", "onnxruntime-int8", "pt2e-int8")
Runner = Callable[[torch.Tensor], torch.Tensor]


def common_fields() -> dict[str, object]:
    return {
        "machine": machine(),
        "cpu_flags": cpu_flags(),
        "emulated_avx2": isa_capped_to_avx2(),
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
        "aten_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }


def emit(row: dict[str, object]) -> None:
    print(json.dumps({**row, **common_fields()}), flush=True)


# --- inputs -------------------------------------------------------------------------------------


def gray_at(img: Image.Image, size: int) -> torch.Tensor:
    return _shrink(torch.from_numpy(np.array(img.convert("L"))), size).clamp(0.0, 1.0)


def heldout(size: int, n: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(n, 1, S, S) gray and (n, 3, S, S) colour truth at the working size, and where they came from."""
    photos = sorted((SHARED / "photos-val").rglob("*.jpg"))[:: max(1, len(list((SHARED / "photos-val").rglob("*.jpg"))) // n)][:n]
    src = "photos-val" if photos else "synthetic"
    rng = np.random.default_rng(1)
    imgs = [Image.open(p).convert("RGB") for p in photos] or [smooth_photo(rng, colour=True) for _ in range(n)]
    gray = torch.cat([gray_at(im, size) for im in imgs])
    rgb = torch.cat(
        [
            torch.nn.functional.interpolate(
                torch.from_numpy(np.array(im)).permute(2, 0, 1)[None].float() / 255.0, size=(size, size), mode="bilinear", antialias=True
            )
            for im in imgs
        ]
    ).clamp(0.0, 1.0)
    return gray, rgb, src


def bench_model(size: int, checkpoint: str | None) -> tuple[torch.nn.Module, str]:
    """The checkpoint given, else a fixed-seed model whose batch norms are set from real photos
    (activations at a trained model's scale; colours not one flat tint). No trained checkpoint was
    on the dev VM when this was written: figures from a trained model are the ones that count."""
    if checkpoint:
        return load_model(checkpoint), checkpoint
    torch.manual_seed(0)
    model = build_model(ModelConfig(image_size=size))
    photos = sorted((SHARED / "photos-train").glob("*"))[1::31][:24]
    rng = np.random.default_rng(2)
    imgs = [Image.open(p) for p in photos] or [smooth_photo(rng) for _ in range(24)]
    x = torch.cat([gray_at(im, size) for im in imgs])
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        for i in range(0, len(x), 8):
            model(x[i : i + 8])
    return model.eval(), "seed-0 VGG16 (random) + batch norms from photos-train"


# --- cases --------------------------------------------------------------------------------------


def onnx_export(model: torch.nn.Module, size: int, path: Path) -> None:
    torch.onnx.export(
        model, (torch.rand(1, 1, size, size),), str(path), input_names=["gray"], output_names=["unit"],
        dynamic_axes={"gray": {0: "n"}, "unit": {0: "n"}}, opset_version=17, dynamo=False,
    )


def ort_case(model: torch.nn.Module, size: int, calib: np.ndarray, tmp: Path, int8: bool) -> Runner:
    import onnx
    import onnxruntime as ort

    fp32 = tmp / "m.onnx"
    if not fp32.exists():
        onnx_export(model, size, fp32)
    path = fp32
    if int8:
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

        convs = [n.name for n in onnx.load(str(fp32)).graph.node if n.op_type == "Conv"]

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self.items = iter([{"gray": calib[i : i + 1]} for i in range(len(calib))])

            def get_next(self):  # noqa: ANN201
                return next(self.items, None)

        path = tmp / "m.int8.onnx"
        quantize_static(
            str(fp32), str(path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            nodes_to_exclude=convs[: cpu_openvino.FP32_FIRST] + convs[-cpu_openvino.FP32_LAST :],
        )
    so = ort.SessionOptions()
    so.intra_op_num_threads = torch.get_num_threads()
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(sess.run(None, {"gray": x.numpy()})[0])


def ov_case(model: torch.nn.Module, size: int, calib: np.ndarray, int8: bool) -> Runner:
    import openvino as ov

    if int8:
        return cpu_openvino.OpenVINORunner(cpu_openvino.convert(copy.deepcopy(model), size, calib))
    ov_model = ov.convert_model(copy.deepcopy(model).float().eval(), example_input=torch.from_numpy(calib[:1]), input=[(-1, 1, size, size)])
    return cpu_openvino.OpenVINORunner(ov_model)


def pt2e_case(model: torch.nn.Module, size: int, calib: np.ndarray) -> Runner:
    import torch._inductor.config as inductor_config
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import X86InductorQuantizer, get_default_x86_inductor_quantization_config

    inductor_config.freezing = True
    quantizer = X86InductorQuantizer()
    quantizer.set_global(get_default_x86_inductor_quantization_config())
    batch = torch.export.Dim("batch", min=1, max=64)
    exported = torch.export.export(copy.deepcopy(model).eval(), (torch.from_numpy(calib[:2]),), dynamic_shapes=({0: batch},)).module()
    prepared = prepare_pt2e(exported, quantizer)
    with torch.no_grad():
        for i in range(0, len(calib), 8):
            prepared(torch.from_numpy(calib[i : i + 8]))
    compiled = torch.compile(convert_pt2e(prepared))

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return compiled(x)

    return run


def torch_case(model: torch.nn.Module, size: int, options: InferenceOptions) -> Runner:
    """A Colorizer (its own copy of the model: it changes the memory format in place) per batch size."""
    colorizers: dict[int, Colorizer] = {}

    def run(x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        if n not in colorizers:
            colorizers[n] = Colorizer(copy.deepcopy(model), device="cpu", batch_size=n, image_size=size, options=options)
        return uv_to_unit(colorizers[n].predict_uv(x))

    return run


def build_case(name: str, model: torch.nn.Module, size: int, calib: np.ndarray, tmp: Path) -> Runner:
    if name == "plain":
        return torch_case(model, size, PLAIN)
    if name == "torch-fast-fp32":
        return torch_case(model, size, InferenceOptions(cpu_path="plain"))
    if name == "torch-bf16":
        if not native_bf16():
            raise RuntimeError("no native bf16 on this CPU (or capped): bf16 autocast would be slower than fp32")
        return torch_case(model, size, InferenceOptions(cpu_path="bf16"))
    if name in ("openvino-fp32", "openvino-int8"):
        return ov_case(model, size, calib, name.endswith("int8"))
    if name in ("onnxruntime-fp32", "onnxruntime-int8"):
        return ort_case(model, size, calib, tmp, name.endswith("int8"))
    if name == "pt2e-int8":
        return pt2e_case(model, size, calib)
    raise ValueError(name)


# --- measurements -------------------------------------------------------------------------------


def rate(run: Runner, x: torch.Tensor, seconds: float) -> float:
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        run(x)
        n += x.shape[0]
    return n / (time.perf_counter() - start)


def colour_error(unit: torch.Tensor, ref: torch.Tensor, gray: torch.Tensor, truth: torch.Tensor) -> dict[str, float]:
    d = (unit_to_uv(unit) - unit_to_uv(ref)).abs().mean(dim=(0, 2, 3)) * 255.0
    y = rgb_to_yuv(truth)[:, :1]

    def psnr(u: torch.Tensor) -> float:
        out = yuv_to_rgb_in_gamut(y, unit_to_uv(u))
        return float((10 * torch.log10(1.0 / ((out - truth) ** 2).mean(dim=(1, 2, 3)))).mean())

    return {"mean_abs_dU_255": round(float(d[0]), 3), "mean_abs_dV_255": round(float(d[1]), 3),
            "psnr_db": round(psnr(unit), 3), "psnr_delta_db": round(psnr(unit) - psnr(ref), 3)}


def peak_rss_child(name: str, args: argparse.Namespace, ckpt: Path) -> dict[str, float]:
    cmd = [sys.executable, "-m", "bench.bench_cpu", "--memory-case", name, "--checkpoint", str(ckpt), "--size", str(args.size)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode or not lines:
        return {"error": (out.stderr.strip().splitlines() or ["?"])[-1][:200]}
    return json.loads(lines[-1])


def _vm_hwm_mib() -> float:
    """This process's peak RSS. Not ru_maxrss: a child started from a big parent inherits its
    parent's figure there; VmHWM belongs to the process's own address space."""
    with open("/proc/self/status") as f:
        kib = next((int(line.split()[1]) for line in f if line.startswith("VmHWM:")), None)
    return kib / 1024 if kib is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_case(name: str, args: argparse.Namespace) -> None:
    """Child process: load the model, note the peak RSS, convert, run batch 8, report both."""
    model = load_model(args.checkpoint)
    calib = calibration_batch(args.size)
    base = _vm_hwm_mib()
    with tempfile.TemporaryDirectory() as tmp:
        run = build_case(name, model, args.size, calib, Path(tmp))
        with torch.inference_mode():
            run(torch.rand(8, 1, args.size, args.size))
        peak = _vm_hwm_mib()
    print(json.dumps({"peak_rss_mib": round(peak), "model_loaded_rss_mib": round(base), "added_peak_mib": round(peak - base)}))


def end_to_end(model: torch.nn.Module, args: argparse.Namespace, tmp: Path) -> None:
    """The int8 path through `Colorizer.colorize` on full-size photos vs `predict_uv` alone."""
    ckpt = tmp / "e2e.safetensors"
    save_checkpoint(ckpt, model)
    c = Colorizer.from_checkpoint(ckpt, device="cpu", batch_size=8, image_size=args.size, options=InferenceOptions(cpu_path=args.e2e_path))
    photos = sorted((SHARED / "photos-val").rglob("*.jpg"))[:32]
    rng = np.random.default_rng(3)
    imgs = [Image.open(p).convert("L") for p in photos] or [smooth_photo(rng) for _ in range(32)]
    for im in imgs:
        im.load()
    x = torch.rand(8, 1, c.image_size, c.image_size)
    c.colorize(imgs[:8])
    full, model_only = [], []
    for _ in range(args.rounds):
        t = time.perf_counter()
        c.colorize(imgs)
        full.append(len(imgs) / (time.perf_counter() - t))
        t = time.perf_counter()
        for _ in range(len(imgs) // 8):
            c.predict_uv(x)
        model_only.append(len(imgs) // 8 * 8 / (time.perf_counter() - t))
    ratios = [m / f for m, f in zip(model_only, full)]
    emit({"bench": "cpu_end_to_end", "path": c.cpu_path, "photos": len(imgs), "photo_size": list(imgs[0].size),
          "colorize_images_per_s": round(float(np.median(full)), 2), "predict_uv_images_per_s": round(float(np.median(model_only)), 2),
          "model_only_over_colorize_median": round(float(np.median(ratios)), 3), "target": "<= 1.25"})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--cases", default=",".join(ALL_CASES))
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=float, default=3.0, help="per case, batch and round")
    p.add_argument("--heldout", type=int, default=24)
    p.add_argument("--checkpoint", default=None, help="a trained checkpoint (default: a fixed-seed proxy, see bench_model)")
    p.add_argument("--no-memory", action="store_true", help="skip the per-case child processes (peak RSS)")
    p.add_argument("--e2e-path", default="int8", help="cpu_path for the end-to-end figure ('' to skip)")
    p.add_argument("--memory-case", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.memory_case:
        memory_case(args.memory_case, args)
        return
    model, model_src = bench_model(args.size, args.checkpoint)
    calib = calibration_batch(args.size)
    gray, truth, heldout_src = heldout(args.size, args.heldout)
    with torch.inference_mode():
        ref = torch.cat([model(gray[i : i + 8]) for i in range(0, len(gray), 8)])
    cases: dict[str, Runner] = {}
    info: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        ckpt = tmp / "bench.safetensors"
        save_checkpoint(ckpt, model)
        for name in args.cases.split(","):
            start = time.perf_counter()
            try:
                run = build_case(name, model, args.size, calib, tmp)
                with torch.inference_mode():
                    unit = torch.cat([run(gray[i : i + 8]).float() for i in range(0, len(gray), 8)])
            except Exception as exc:  # a backend missing or failing: say so, go on with the others
                emit({"bench": "cpu_path", "case": name, "skipped": f"{type(exc).__name__}: {str(exc)[:300]}"})
                continue
            cases[name] = run
            info[name] = {"conversion_s": round(time.perf_counter() - start, 1), **colour_error(unit, ref, gray, truth)}
            if not args.no_memory:
                info[name].update(peak_rss_child(name, args, ckpt))
        x = {b: torch.rand(b, 1, args.size, args.size) for b in (1, 8)}
        rates: dict[tuple[str, int], list[float]] = {(n, b): [] for n in cases for b in (1, 8)}
        with torch.inference_mode():
            for run in cases.values():
                for b in (1, 8):
                    run(x[b])  # warm-up (and compile)
            for _ in range(args.rounds):  # round-robin: every case sees the same background load
                for name, run in cases.items():
                    for b in (1, 8):
                        rates[(name, b)].append(rate(run, x[b], args.seconds))
        base = rates.get(("plain", 1))
        for name in cases:
            row: dict[str, object] = {"bench": "cpu_path", "case": name, "size": args.size, "rounds": args.rounds,
                                      "model": model_src, "heldout": f"{heldout_src} x{len(gray)}"}
            for b in (1, 8):
                row[f"b{b}_images_per_s"] = round(float(np.median(rates[(name, b)])), 2)
                if base:
                    row[f"b{b}_over_plain_b1"] = round(float(np.median([r / p for r, p in zip(rates[(name, b)], base)])), 2)
            if ("torch-bf16", 8) in rates:
                row["b8_over_bf16_b8"] = round(float(np.median([r / q for r, q in zip(rates[(name, 8)], rates[("torch-bf16", 8)])])), 2)
            emit({**row, **info[name]})
        if args.e2e_path:
            end_to_end(model, args, tmp)


if __name__ == "__main__":
    main()
