"""The int8 CPU path: the model converted to OpenVINO, quantized to int8 with NNCF (static,
calibrated on real photos), compiled for this CPU, cached on disk by model id.

Chosen by measurement (bench/bench_cpu.py, BENCHMARKS.md): about 2.2x PyTorch fp32 eager on an
AVX2-only CPU and 1.85x bf16 autocast on a CPU with bf16, the output's mean |dU|, |dV| well under
the 2/255 tolerance (tests/test_cpu_fast.py checks it). The first conv (the gray input, whose 3
identical channels make it sensitive) and the decoder's last three convs (FP32_LAST)
stay in fp32; they are a small part of the compute. Conversion takes ~15-60 s on 2 cores (by
working size and CPU), once per model: the IR (.xml + .bin) goes into the cache, and later runs
only compile it (~1 s).

Optional dependencies (`pip install archive-colorizer[cpu]`): openvino, nncf.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)


def _before_importing_openvino() -> None:
    """What must hold before OpenVINO or NNCF is first imported here: their telemetry blocked,
    and torch's irrelevant CUDA note quiet. Both send usage telemetry to Google Analytics unless
    a consent file says no; both fall back to a stub when `openvino_telemetry` cannot be imported. This
    tool phones nowhere (Prefect's analytics are off too), so that import is blocked, for this
    process, before either is first imported here (not when this module is imported: a process
    that never takes the int8 path keeps its modules as they are)."""
    sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]
    if "torch.utils.cpp_extension" not in sys.modules:
        # NNCF imports it, and on import it warns that no CUDA toolkit is found (on the user's
        # terminal, through torch's own handler): a note for building C++ extensions, which
        # nothing here does. Quiet for that import only.
        cpp_log = logging.getLogger("torch.utils.cpp_extension")
        level = cpp_log.level
        cpp_log.setLevel(logging.ERROR)
        try:
            import torch.utils.cpp_extension  # noqa: F401
        finally:
            cpp_log.setLevel(level)

_CONVERTING = threading.Lock()
BACKEND = "openvino-int8-v1"  # in cache names: a new recipe gets new files, not stale ones
FP32_FIRST = 1  # convs kept in fp32 at the input
# ... and the last three, nearest the output (by position: OpenVINO renames a convolution it
# fuses with its batch norm): the regression head's fuse1, refine and head (3 channels, right
# before the sigmoid); the classification head's fuse3, fuse2 and classify (its logits go
# through an annealed softmax, which sharpens any error in them).
FP32_LAST = 3


def available() -> str | None:
    """None when openvino and nncf import; else what is missing, for the one log line."""
    _before_importing_openvino()
    missing = []
    for name in ("openvino", "nncf"):
        try:
            __import__(name)
        except Exception:  # ImportError, or a broken install raising something else
            missing.append(name)
    return ", ".join(missing) or None


def cache_path(cache_dir: str | os.PathLike[str], model_id: str, image_size: int) -> Path:
    return Path(cache_dir) / f"{model_id}.s{image_size}.{BACKEND}.xml"


def convert(model: nn.Module, image_size: int, calibration: np.ndarray):  # -> openvino.Model
    """fp32 torch model -> int8 OpenVINO model (dynamic batch, fixed working size)."""
    _before_importing_openvino()
    import nncf
    import openvino as ov

    # A copy: the caller's model keeps its memory format and mode (it may be mid-training).
    model = copy.deepcopy(model).float().eval().to(memory_format=torch.contiguous_format)
    example = torch.from_numpy(calibration[:1])
    with torch.no_grad():
        ov_model = ov.convert_model(model, example_input=example, input=[(-1, 1, image_size, image_size)])
    convs = [op.get_friendly_name() for op in ov_model.get_ordered_ops() if op.get_type_name() == "Convolution"]
    keep_fp32 = convs[:FP32_FIRST] + convs[len(convs) - FP32_LAST :]
    data = nncf.Dataset([calibration[i : i + 1] for i in range(len(calibration))])
    # NNCF logs at INFO and draws progress bars on stdout: in a command's output (or a bench's
    # JSON lines) they are noise. Its warnings still reach the log; the caller logs the conversion.
    # redirect_stdout swaps sys.stdout for the whole process: _CONVERTING keeps two conversions
    # from interleaving their swaps (which could leave sys.stdout pointing at a discarded buffer).
    nncf.set_log_level(logging.WARNING)
    with _CONVERTING, contextlib.redirect_stdout(io.StringIO()):
        return nncf.quantize(
            ov_model,
            data,
            subset_size=len(calibration),
            preset=nncf.QuantizationPreset.MIXED,  # asymmetric activations: ReLU outputs use all 256 levels
            ignored_scope=nncf.IgnoredScope(names=keep_fp32),
            fast_bias_correction=True,
        )


class OpenVINORunner:
    """A compiled int8 model: (N, 1, S, S) float32 CPU tensor -> (N, 2, S, S) unit UV (float32)."""

    def __init__(self, ov_model, *, threads: int | None = None) -> None:  # noqa: ANN001 (openvino.Model)
        import openvino as ov

        config = {
            "INFERENCE_PRECISION_HINT": "f32",  # the layers kept out of int8 stay fp32, not bf16
            "PERFORMANCE_HINT": "LATENCY",  # one request at a time, all threads on it
            "INFERENCE_NUM_THREADS": int(threads or torch.get_num_threads()),
        }
        self.compiled = ov.Core().compile_model(ov_model, "CPU", config)
        self._request = self.compiled.create_infer_request()
        self._lock = threading.Lock()  # one infer request; a Colorizer may be shared by threads

    def __call__(self, gray: torch.Tensor) -> torch.Tensor:
        x = np.ascontiguousarray(gray.detach().to("cpu", torch.float32).numpy())
        with self._lock:
            self._request.infer({0: x})
            out = self._request.get_output_tensor(0).data.copy()
        return torch.from_numpy(out)


def load_or_convert(
    model: nn.Module,
    image_size: int,
    *,
    cache_dir: str | os.PathLike[str] | None,
    model_id: str,
    calibration: np.ndarray | None = None,
) -> OpenVINORunner:
    """The cached int8 model for `model_id`, else a fresh conversion (saved to the cache when
    there is one: written to temporary names, then renamed, so concurrent workers never read a
    half-written model). `cache_dir=None`: convert in memory, keep nothing."""
    _before_importing_openvino()
    import openvino as ov

    path = cache_path(cache_dir, model_id, image_size) if cache_dir is not None else None
    if path is not None and path.is_file() and path.with_suffix(".bin").is_file():
        try:
            return OpenVINORunner(ov.Core().read_model(str(path), str(path.with_suffix(".bin"))))
        except Exception as exc:  # a damaged cache entry: convert again and replace it
            log.warning("int8 model cache %s unreadable (%s); converting again", path, exc)
    where = f"; cached in {path.parent}" if path is not None else ""
    log.info("converting model %s to int8 for this CPU (OpenVINO, once per model: 15-60 s%s)", model_id, where)
    if calibration is None:
        from colorize_core.model.cpu_calibration import calibration_batch

        calibration = calibration_batch(image_size)
    start = time.perf_counter()
    q = convert(model, image_size, calibration)
    log.info("converted model %s to int8 (OpenVINO) in %.0f s", model_id, time.perf_counter() - start)
    if path is not None:
        try:
            _save_atomic(q, path)
        except OSError as exc:  # a read-only checkpoint folder: run anyway, convert again next time
            log.warning("could not cache the int8 model in %s (%s)", path.parent, exc)
    return OpenVINORunner(q)


def _save_atomic(ov_model, path: Path) -> None:  # noqa: ANN001
    import openvino as ov

    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".tmp-") as tmp:
        tmp_xml = Path(tmp) / path.name
        ov.save_model(ov_model, str(tmp_xml), compress_to_fp16=False)
        # The .bin first: a reader that sees the .xml finds its weights.
        os.replace(tmp_xml.with_suffix(".bin"), path.with_suffix(".bin"))
        os.replace(tmp_xml, path)
