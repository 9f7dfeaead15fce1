#!/usr/bin/env bash
# Wheels for the lent GPU machine (Python 3.12, x86-64, no network): downloads
# exactly the wheels of scripts/device-wheels.txt into .whl/ (ignored), checks
# that every requirement of each is either in that list or already on the
# machine's image (scripts/device-image.txt), and that what travels to the
# machine (the working tree, .whl/ and .gpu-check/) stays under 64 MiB.
# Idempotent: a wheel already there is not fetched again.
# Usage: bash scripts/device_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && PY=.venv/bin/python
LIST=scripts/device-wheels.txt
mkdir -p .whl
mapfile -t WANT < <(grep -v '^\s*#' "$LIST" | sed 's/\s*#.*//' | grep -v '^\s*$')
PLATFORMS=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 \
  manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  PLATFORMS+=(--platform "$p")
done
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp "${PLATFORMS[@]}" -d .whl "${WANT[@]}" \
  2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)

"$PY" scripts/device_lists.py .whl

# What a `run` sends: tracked and untracked-not-ignored files, plus the carried
# .whl/ and .gpu-check/.
tree=$(git ls-files -z -co --exclude-standard | xargs -0 -r stat -c %s 2>/dev/null \
  | awk '{s += $1} END {print s + 0}')
carried=0
for d in .whl .gpu-check; do
  [ -e "$d" ] && carried=$((carried + $(du -sb "$d" | cut -f1)))
done
"$PY" - "$tree" "$carried" <<'PY'
import sys
tree, carried = (int(a) for a in sys.argv[1:])
mib = (tree + carried) / 2**20
print(f"travels: {mib:.1f} MiB (working tree {tree / 2**20:.1f}, "
      f".whl/ and .gpu-check/ {carried / 2**20:.1f}) of 64 MiB")
sys.exit(0 if mib < 64 else "device_wheels: over the 64 MiB a run can carry")
PY
