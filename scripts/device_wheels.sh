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

"$PY" - "$LIST" scripts/device-image.txt .whl <<'PY'
"""One wheel per listed name==version, nothing else in .whl/, every requirement
of every wheel covered by the list or the image."""
import re
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def names(path: str) -> list[str]:
    lines = Path(path).read_text().splitlines()
    return [ln.split("#")[0].strip() for ln in lines if ln.split("#")[0].strip()]


want = {norm(r.split("==")[0]): r.split("==")[1] for r in names(sys.argv[1])}
image = {norm(n) for n in names(sys.argv[2])}
env = default_environment() | {
    "python_version": "3.12", "python_full_version": "3.12.3",
    "implementation_name": "cpython", "sys_platform": "linux",
    "platform_machine": "x86_64", "platform_system": "Linux", "extra": "",
}
have: dict[str, str] = {}
problems: list[str] = []
for whl in sorted(Path(sys.argv[3]).glob("*.whl")):
    name, version = whl.name.split("-")[:2]
    if want.get(norm(name)) != version:
        whl.unlink()  # a version no longer listed: one version of each travels
        continue
    have[norm(name)] = version
    with zipfile.ZipFile(whl) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        msg = Parser().parsestr(z.read(meta).decode())
    for spec in msg.get_all("Requires-Dist") or []:
        req = Requirement(spec)
        if req.marker is not None and not req.marker.evaluate(env):
            continue  # an extra, or another platform's
        if norm(req.name) not in want and norm(req.name) not in image:
            problems.append(f"{whl.name} needs {req}: add it to {sys.argv[1]}")
missing = sorted(set(want) - set(have))
problems += [f"no wheel for {n}=={want[n]} in .whl/" for n in missing]
if problems:
    sys.exit("device_wheels: " + "; ".join(problems))
print(f"device_wheels: {len(have)} wheels in .whl/, every requirement covered")
PY

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
