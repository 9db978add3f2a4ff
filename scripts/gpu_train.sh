#!/usr/bin/env bash
# Train the packaged model on one GPU in one go (the `device` tool's machine or any CUDA
# box): render a synthetic set on all cores, train configs/synthetic_r18_gpu.yaml within
# a time budget, score it on the synthetic benchmark and package the weights.
#
#   bash scripts/gpu_train.sh                       # on the GPU machine, from the repo root
#   TRAIN=400 EVAL=64 BENCH=64 MINUTES=1 CONFIG=configs/demo_cpu.yaml DEVICE=cpu \
#       bash scripts/gpu_train.sh                   # the same steps, tiny, on a CPU (a check)
#
# Everything that must come back is written under OUT (default: $OUT, else outputs/gpu):
# train.log, eval_metrics.csv, benchmark.json and the packaged model (manifest + float16
# shards of <= 15 MiB, for src/m3dhmr/weights/). Dependencies the machine lacks can be
# installed from wheels in .whl/ first (see the device tool's notes).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-outputs/gpu}"
TRAIN="${TRAIN:-100000}"
EVAL="${EVAL:-1000}"
BENCH="${BENCH:-1000}"
MINUTES="${MINUTES:-6.5}"
CONFIG="${CONFIG:-configs/synthetic_r18_gpu.yaml}"
DEVICE="${DEVICE:-cuda}"
WORKERS="${WORKERS:-$(nproc)}"
PY="${PYTHON:-python3}"
WORK="${WORK:-/tmp/m3dhmr-gpu}"
mkdir -p "$OUT" "$WORK"
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD/src:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
m3dhmr() { "$PY" -m m3dhmr "$@"; }
t0=$(date +%s)
echo "[gpu_train] rendering $TRAIN training + $EVAL evaluation images on $WORKERS workers" | tee "$OUT/train.log"
m3dhmr synth --out "$WORK/data" --train "$TRAIN" --eval "$EVAL" --seed 0 --workers "$WORKERS" --overwrite \
    --no-progress 2>&1 | tail -1 | tee -a "$OUT/train.log"
echo "[gpu_train] rendered in $(( $(date +%s) - t0 )) s; training $CONFIG for at most $MINUTES min" | tee -a "$OUT/train.log"
m3dhmr train --config "$CONFIG" --data "$WORK/data" --out "$WORK/run" --device "$DEVICE" \
    --max-minutes "$MINUTES" --no-progress 2>&1 | tee -a "$OUT/train.log"
cp "$WORK/run/eval_metrics.csv" "$OUT/"
m3dhmr benchmark --checkpoint "$WORK/run/checkpoints/last.safetensors" --data "$WORK/bench" --num "$BENCH" \
    --device "$DEVICE" --workers "$WORKERS" --out "$WORK/scores" 2>&1 | tee -a "$OUT/train.log"
cp "$WORK/scores/benchmark.json" "$OUT/"
"$PY" - "$WORK/run/checkpoints/last.safetensors" "$OUT/weights" <<'PYEOF'
import sys
from m3dhmr.pretrained import package_weights
print("packaged:", package_weights(sys.argv[1], "m3dhmr_r18_synthetic", sys.argv[2]))
PYEOF
echo "[gpu_train] done in $(( $(date +%s) - t0 )) s" | tee -a "$OUT/train.log"
