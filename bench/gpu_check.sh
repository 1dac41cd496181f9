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
#   SMOKE=1 bash bench/gpu_check.sh /tmp/smoke    # the script itself, on CPU, in about a minute
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
# SMOKE=1: the same steps on CPU at toy sizes, to check the script itself on a machine with no GPU.
if [[ "${SMOKE:-0}" == 1 ]]; then
  dev=cpu size=64 images=24 batch=4 iters=1 mem="1 2" decode=32 samples=200
else
  dev=cuda size=224 images=2000 batch=128 iters=20 mem="8 32" decode=1024 samples=2000
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/gpu.csv" 2>&1
step "gpu tests" 120 "$py" -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider -o addopts="" -rA
# shellcheck disable=SC2086  # $mem is two numbers
step "models: inference and memory per image" 80 "$py" -m bench.bench_models --device $dev --size $size --batch-size 64 --iters $iters --mem-batches $mem > "$out/models.jsonl"
step "inference, end to end, training" 200 "$py" -m bench.bench_infer --device $dev --size $size --images $images --batch-size $batch > "$out/infer.jsonl"
step "jpeg decode" 40 "$py" -m bench.bench_gpu_decode --images $decode > "$out/decode.jsonl"
step "training input, all cores" 60 "$py" -m bench.bench_loader --samples $samples > "$out/loader.jsonl"
cat "$out"/*.jsonl
exit $status
