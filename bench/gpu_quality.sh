#!/usr/bin/env bash
# Model quality on one GPU: trains for the seed's whole budget, 156,000 steps x 6 = 936,000
# samples, in batches of 256 (3,656 steps; Adam, lr scaled by sqrt(256 / 16) from the CPU
# harness's 1e-3 at 16), at 224 px, the VGG16 backbone trained from random weights (no ImageNet
# file can be downloaded there), stopping early at 7 minutes; then scores the model on
# held-out photos at their own resolution (bench/quality.py: PSNR, SSIM, AuC, colourfulness,
# border error, beside the gray baseline). The seed took three days for this budget.
# Needs the working tree, the machine's PyTorch image, and the data built here beforehand:
#
#   .venv/bin/python -m bench.quality_data        # .quality-data/: ~30 MB, 256-px shards + 120 val photos
#   bash bench/gpu_quality.sh "$OUT"              # on the GPU machine, carrying .quality-data
#   SMOKE=1 bash bench/gpu_quality.sh /tmp/q      # the script itself, on CPU, in about a minute
set -uo pipefail
out=${1:?usage: bench/gpu_quality.sh OUTDIR}
mkdir -p "$out"
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
data=${QUALITY_DATA:-.quality-data}
if [[ ! -f "$data/train/summary.json" ]]; then
  echo "no dataset in $data/train: run '.venv/bin/python -m bench.quality_data' first and carry $data" >&2
  exit 1
fi
if [[ "${SMOKE:-0}" == 1 ]]; then
  dev=cpu size=32 batch=8 samples=96 seconds=40 val=3
else
  dev=cuda size=224 batch=256 samples=936000 seconds=420 val=120
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/gpu.csv" 2>&1
timeout $((seconds + 120)) "$py" -m bench.quality --train "$data/train" --val "$data/val" --val-limit $val \
  --variants regression-train-backbone --device $dev --image-size $size --batch-size $batch \
  --steps $((samples / batch)) --seconds $seconds --optimizer adam --lr 0.004 --out "$out/models" | tee "$out/quality.jsonl"
status=${PIPESTATUS[0]}
cp "$out/models/strip.png" "$out/strip.png" 2>/dev/null || true
rm -rf "$out/models"  # checkpoints stay behind: only the figures and the strip come back
exit "$status"
