#!/usr/bin/env bash
# One prepared GPU check for a lent GPU machine (one H100/H200), in well under 8 minutes:
# the gpu-marked tests, then every GPU benchmark at 224 px (inference, training step, memory per
# image, end to end on 2000 images made by the script with Pillow and with nvJPEG decode/encode
# in the shard, nvJPEG decode alone, and how many samples/s the CPUs feed training). JSON lines
# go to OUTDIR.
# Needs only the working tree and the machine's PyTorch image (torch, torchvision, pillow,
# pyarrow, safetensors, scipy, scikit-image, pytest): no downloads, no Prefect, no S3.
#
#   bash bench/gpu_check.sh "$OUT"
set -uo pipefail
out=${1:?usage: bench/gpu_check.sh OUTDIR}
mkdir -p "$out"
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
status=0
step() {  # name, seconds, command...
  local name=$1 limit=$2; shift 2
  echo "== $name (limit ${limit}s)"
  local t0=$SECONDS
  timeout "$limit" "$@" || { echo "!! $name failed ($?)"; status=1; }
  echo "== $name took $((SECONDS - t0))s"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/gpu.csv" 2>&1
step "gpu tests" 120 "$py" -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider -o addopts="" -rA
step "models: inference and memory per image" 80 "$py" -m bench.bench_models --device cuda --batch-size 64 --iters 20 --mem-batches 8 32 > "$out/models.jsonl"
step "inference, end to end, training" 200 "$py" -m bench.bench_infer --device cuda --images 2000 --batch-size 128 > "$out/infer.jsonl"
step "jpeg decode" 40 "$py" -m bench.bench_gpu_decode --images 1024 > "$out/decode.jsonl"
step "training input, all cores" 60 "$py" -m bench.bench_loader --samples 2000 > "$out/loader.jsonl"
cat "$out"/*.jsonl
exit $status
