#!/usr/bin/env bash
# The CUDA check: every CUDA path once, with numbers, on a machine with one
# CUDA GPU and no network (the lent GPU machine: python3 3.12 with torch, no
# .venv, no ../shared). About 5 minutes there; at most 8 (a hard timeout on
# each part), so a rerun fits a 15-minute lease.
#
#   bash benchmarks/gpu_check.sh --prepare       # here: wheels and data into
#                                                #   .whl/ and .gpu-check/ (ignored)
#   bash benchmarks/gpu_check.sh [--device cuda] [--out DIR]    # there
#   bash benchmarks/gpu_check.sh --device cpu    # the rehearsal, here: every part
#                                                #   on the CPU, smaller workloads
#
# On the lent machine (the device tool), with .whl and .gpu-check carried:
#   bash benchmarks/gpu_check.sh --out "$OUT"
#
# Parts, each printing one summary line (all repeated at the end, so the tail of
# the output is the result even when no file comes back):
#   install    the carried wheels into a temporary site folder
#   env        card, driver, torch and CUDA versions
#   tests      pytest -m cuda (tests/unit/training/test_cuda.py) on the device
#   fashion    conv and gmm epoch time on all 60,000 Fashion-MNIST images
#   bench64    training loop (ours vs seed-style) and embed stage at 64 px:
#              images/s, GPU-busy fraction, peak CUDA memory
#   bench256   training loop at 256 px
#   inception  FID feature extractor throughput
# Files under DIR (at most 8): summary.txt, env.json, tests.txt, fashion.json,
# bench-64.json, bench-256.json, inception.json.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DEVICE=cuda
OUTDIR=${OUT:-.gpu-check/out}
PREPARE=0
while [ $# -gt 0 ]; do
  case $1 in
    --prepare) PREPARE=1 ;;
    --device) DEVICE=$2; shift ;;
    --out) OUTDIR=$2; shift ;;
    *) echo "gpu_check: unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
  esac
  shift
done
DATA=.gpu-check
COCO_N=96  # COCO sample images that travel (of 249; what fits 64 MiB)

if [ "$PREPARE" = 1 ]; then
  set -e
  bash scripts/device_wheels.sh >/dev/null
  PY=${PYTHON:-python3}
  [ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ] && PY=.venv/bin/python
  "$PY" - "$DATA" "$COCO_N" <<'PY'
"""Copy the data the check reads: Fashion-MNIST's four IDX files and the first
N images (by id) of the shared COCO sample with their captions."""
import json
import shutil
import sys
from pathlib import Path

out, n = Path(sys.argv[1]), int(sys.argv[2])
fashion, shared = Path("/usr/share/datasets/fashion-mnist"), Path("../shared/data")
if not (fashion / "train-images-idx3-ubyte.gz").is_file():
    sys.exit(f"gpu_check --prepare: {fashion} missing: apt-get install dataset-fashion-mnist")
if not (shared / "coco-sample" / "captions.json").is_file():
    sys.exit(f"gpu_check --prepare: {shared}/coco-sample missing: run beside ../shared")
(out / "fashion-mnist").mkdir(parents=True, exist_ok=True)
for f in fashion.glob("*-ubyte.gz"):
    shutil.copy2(f, out / "fashion-mnist" / f.name)
src = shared / "coco-sample"
dst = out / "shared" / "coco-sample"
if dst.exists():
    shutil.rmtree(dst)
(dst / "images").mkdir(parents=True)
coco = json.loads((src / "captions.json").read_text())
keep = sorted(
    (i for i in coco["images"] if (src / "images" / i["file_name"]).is_file()),
    key=lambda i: i["id"],
)[:n]
ids = {i["id"] for i in keep}
for i in keep:
    shutil.copy2(src / "images" / i["file_name"], dst / "images" / i["file_name"])
coco["images"] = keep
coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] in ids]
(dst / "captions.json").write_text(json.dumps(coco))
print(f"gpu_check --prepare: {len(keep)} COCO images, "
      f"{len(coco['annotations'])} captions, Fashion-MNIST -> {out}/")
PY
  bash scripts/device_wheels.sh | tail -1
  exit 0
fi

[ -d .whl ] && [ -d "$DATA/shared/coco-sample" ] || {
  echo "gpu_check: .whl/ or $DATA/ missing: run bash $0 --prepare first (here)" >&2
  exit 2
}
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
SUMMARY=$OUTDIR/summary.txt
: >"$SUMMARY"
T0=$(date +%s)
say() { echo "$*" | tee -a "$SUMMARY"; }

# part NAME SECONDS CMD...: run CMD with a hard timeout; its last line is the
# summary (or the reason it failed).
part() {
  local name=$1 limit=$(($2 * SLOW)) t=$(date +%s) rc
  shift 2
  echo "=== $name (limit ${limit}s)" >&2
  timeout -k 10 "$limit" "$@" >"$OUTDIR/.$name.log" 2>&1
  rc=$?
  cat "$OUTDIR/.$name.log" >&2
  local last
  last=$(grep -v '^\s*$' "$OUTDIR/.$name.log" | tail -1)
  if [ $rc = 0 ]; then
    say "$name ok ($(($(date +%s) - t)) s): $last"
  elif [ $rc = 124 ] || [ $rc = 137 ]; then
    say "$name TIMED OUT after ${limit}s: $last"
  else
    say "$name FAILED (rc $rc, $(($(date +%s) - t)) s): $last"
  fi
  rm -f "$OUTDIR/.$name.log"
}

SLOW=1  # the rehearsal's parts get 4x their GPU limits
[ "$DEVICE" = cpu ] && SLOW=4
SITE=$(mktemp -d)/site
WHEELS=(.whl/*.whl)
PLAT=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64
  --platform manylinux2014_x86_64)
if "$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))'; then
  part install 30 bash -c '"$0" -m pip install -q --no-index --no-deps --no-compile \
    --no-cache-dir --upgrade --target "$1" "${@:2}" && echo "$(($# - 1)) wheels -> $1"' \
    "$PY" "$SITE" "${WHEELS[@]}"
  export PYTHONPATH=$SITE:$ROOT
else  # the rehearsal: the cp312 wheels would install on Python 3.12, x86-64
  part install 30 bash -c '"$0" -m pip install -q --dry-run --no-index --no-deps \
    --only-binary=:all: --python-version 3.12 --implementation cp "${@:3}" \
    --target "$1" ${2} && echo "rehearsal: the wheels would install on CPython 3.12 x86-64"' \
    "$PY" "$SITE" "${WHEELS[*]}" "${PLAT[@]}"
  export PYTHONPATH=$ROOT
fi
export CVAE_SHARED_DATA=$ROOT/$DATA/shared CVAE_FASHION_ROOT=$ROOT/$DATA/fashion-mnist
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1

if [ "$DEVICE" = cpu ]; then  # the rehearsal: same parts, CPU-sized work
  FASHION=(--epochs 1 --train-limit 2048) BENCH=(--steps 2 --batch-size 16)
  INCEPTION=(--n 64 --batch-size 32)
else
  FASHION=(--epochs 2) BENCH=(--steps 30 --batch-size 64)
  INCEPTION=(--n 8192 --batch-size 512)
fi

part env 20 "$PY" -m benchmarks.gpu_parts env --json "$OUTDIR/env.json"
CVAE_TEST_DEVICE=$DEVICE part tests 90 bash -c \
  "set -o pipefail; '$PY' -m pytest -m cuda -q -rA -p no:cacheprovider -s \
   tests/unit/training/test_cuda.py 2>&1 | tee '$OUTDIR/tests.txt'"
part fashion 80 "$PY" -m benchmarks.gpu_parts fashion --device "$DEVICE" \
  "${FASHION[@]}" --json "$OUTDIR/fashion.json"
part bench64 110 "$PY" -m benchmarks --device "$DEVICE" --size 64 "${BENCH[@]}" \
  --cases train_ours train_seed embed_ours --json "$OUTDIR/bench-64.json" \
  --out "$OUTDIR/.bench-64.md"
part bench256 100 "$PY" -m benchmarks --device "$DEVICE" --size 256 "${BENCH[@]}" \
  --cases train_ours train_seed --json "$OUTDIR/bench-256.json" \
  --out "$OUTDIR/.bench-256.md"
part inception 40 "$PY" -m benchmarks.gpu_parts inception --device "$DEVICE" \
  "${INCEPTION[@]}" --json "$OUTDIR/inception.json"

"$PY" - "$OUTDIR" <<'PY' | tee -a "$SUMMARY"
"""The numbers of the bench parts, one line each."""
import json
import sys
from pathlib import Path

for size in (64, 256):
    f = Path(sys.argv[1]) / f"bench-{size}.json"
    if not f.is_file():
        continue
    for name, r in json.loads(f.read_text())["results"].items():
        rates = ", ".join(
            f"{r[k]:.0f} {k.replace('_per_s', '/s')}" for k in r if k.endswith("_per_s")
        )
        busy = r.get("gpu_busy")
        print(
            f"  {size} px {name}: {rates}; GPU busy "
            f"{'n/a' if busy is None else f'{busy:.0%}'}; peak CUDA "
            f"{r.get('peak_cuda_mib', 0):.0f} MiB; process tree {r['peak_tree_mib']:.0f} MiB"
        )
PY
cat "$OUTDIR"/.bench-*.md >>"$SUMMARY" 2>/dev/null
rm -f "$OUTDIR"/.bench-*.md
echo "total $(($(date +%s) - T0)) s" >>"$SUMMARY"
echo "===== summary ($DEVICE)"
cat "$SUMMARY"
! grep -q "FAILED\|TIMED OUT" "$SUMMARY"
