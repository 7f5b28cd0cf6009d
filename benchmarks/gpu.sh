#!/usr/bin/env bash
# Every GPU check and number that docs/benchmarks.md asks for, in one prepared run for a lent
# GPU machine (most important first, each step time-limited so that a short lease still
# returns the first results):
#
#   bash benchmarks/gpu.sh
#
# writes JSON and logs under $OUT (benchmarks/out if unset). The limits add up to 560 s, inside
# the device tool's 600 s per command. Only torch and einops are needed
# (the benchmark scripts import no other dependency of pixelfold). A dry run of the same steps
# on a CPU, with tiny models:
#
#   DEVICE=cpu PRESETS=pixelfolder-tiny-32 BATCH=2 TRAIN_PRESET=pixelfolder-tiny-32 \
#     TRAIN_BATCHES=1 REF_BATCHES=1 CHECK_FLAGS=--no-compile COMPILE= bash benchmarks/gpu.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/out}
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
PRESETS=${PRESETS:-pixelfolder-256,cips-256}
BATCH=${BATCH:-64}
TRAIN_PRESET=${TRAIN_PRESET:-pixelfolder-256}
TRAIN_BATCHES=${TRAIN_BATCHES:-8,16,32}
REF_BATCHES=${REF_BATCHES:-8}
CHECK_FLAGS=${CHECK_FLAGS:---large}
COMPILE=${COMPILE---compile}
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
mkdir -p "$OUT"
status=0

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to $OUT/NAME.log
  local name=$1 limit=$2
  shift 2
  echo "== $name (limit ${limit} s): $*"
  timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
  local rc=${PIPESTATUS[0]}
  [ "$rc" -eq 0 ] || { echo "== $name ended with status $rc"; status=1; }
}

{ nvidia-smi -L || true; "$PY" -c "import torch; print('torch', torch.__version__)"; } \
  | tee "$OUT/machine.txt"
step check 120 "$PY" benchmarks/check_device.py --device "$DEVICE" $CHECK_FLAGS \
  --json-out "$OUT/check.json"
step generator-bfloat16 200 "$PY" benchmarks/generator.py --device "$DEVICE" \
  --dtype bfloat16 $COMPILE --batch-size "$BATCH" --presets "$PRESETS" \
  --json-out "$OUT/generator-bfloat16.json"
step train-step-bfloat16 150 "$PY" benchmarks/train_step.py --device "$DEVICE" \
  --dtype bfloat16 --presets "$TRAIN_PRESET" --batch-sizes "$TRAIN_BATCHES" \
  --reference-batch-sizes "$REF_BATCHES" --json-out "$OUT/train-step-bfloat16.json"
step generator-float32 90 "$PY" benchmarks/generator.py --device "$DEVICE" \
  --batch-size "$BATCH" --presets "$PRESETS" --json-out "$OUT/generator-float32.json"
exit $status
