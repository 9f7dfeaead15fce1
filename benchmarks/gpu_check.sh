#!/usr/bin/env bash
# The CUDA check, prepared to run as is on a machine with one CUDA GPU (about
# 6-8 minutes): every CUDA path once, with numbers.
#   1. python -m benchmarks --device cuda at 64 and 256 px: training loop (bf16
#      autocast, channels_last, uint8 data on the GPU), shard and embed stages;
#      images/s, GPU-busy fraction of the training loop, peak CUDA memory.
#   2. python -m benchmarks.scale on the 5,000-image fixture at 256 px, one
#      epoch: every COCO stage on the GPU, wall time and peak process-tree
#      memory, while nvidia-smi samples utilisation and memory every 200 ms.
# Usage: bash benchmarks/gpu_check.sh [OUT_DIR]   (default: benchmarks/gpu-check)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-benchmarks/gpu-check}
mkdir -p "$OUT"
PY=${PYTHON:-.venv/bin/python}
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.csv"

for size in 64 256; do
  "$PY" -m benchmarks --device cuda --size "$size" --steps 50 --batch-size 64 \
    --out "$OUT/bench-$size.md" --json "$OUT/bench-$size.json"
done

nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader,nounits \
  -lms 200 > "$OUT/nvidia-smi.csv" &
SMI=$!
trap 'kill $SMI 2>/dev/null || true' EXIT
"$PY" -m benchmarks.scale --n 5000 --sizes 256 --filter-k 118287 \
  --out "$OUT/scale-5000-256.md" --json "$OUT/scale-5000-256.json"
kill $SMI
"$PY" - "$OUT/nvidia-smi.csv" <<'PY'
import sys
rows = [line.split(", ") for line in open(sys.argv[1]) if line.count(",") == 2]
util = [float(r[1]) for r in rows]
mem = [float(r[2]) for r in rows]
print(f"scale run: {len(rows)} samples, GPU busy (mean utilization) "
      f"{sum(util) / max(len(util), 1):.0f}%, peak memory used {max(mem or [0]):.0f} MiB")
PY
cat "$OUT"/bench-*.md "$OUT/scale-5000-256.md"
