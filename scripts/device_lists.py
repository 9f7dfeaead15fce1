"""The GPU machine's two package lists (scripts/device-wheels.txt: what travels
as wheels; scripts/device-image.txt: what its image has) and the check that the
downloaded wheels are exactly the listed ones, every requirement covered.

    python scripts/device_lists.py .whl    # run by scripts/device_wheels.sh
"""

from __future__ import annotations

import re
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

HERE = Path(__file__).resolve().parent
WHEELS = HERE / "device-wheels.txt"
IMAGE = HERE / "device-image.txt"
# The lent machine's interpreter, for evaluating requirement markers.
TARGET = {
    "python_version": "3.12",
    "python_full_version": "3.12.3",
    "implementation_name": "cpython",
    "sys_platform": "linux",
    "platform_machine": "x86_64",
    "platform_system": "Linux",
    "extra": "",
}


def norm(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def listed(path: Path) -> dict[str, str]:
    """name -> version ('' where the line gives none), comments dropped."""
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            out[norm(name)] = version
    return out


def check_wheels(folder: Path) -> list[str]:
    """Drop wheels of versions no longer listed (one version of each travels);
    return the problems: a listed wheel missing, a requirement not covered."""
    from packaging.markers import default_environment
    from packaging.requirements import Requirement

    want, image = listed(WHEELS), set(listed(IMAGE))
    env = default_environment() | TARGET
    have: set[str] = set()
    problems: list[str] = []
    for whl in sorted(folder.glob("*.whl")):
        name, version = whl.name.split("-")[:2]
        if want.get(norm(name)) != version:
            whl.unlink()
            continue
        have.add(norm(name))
        with zipfile.ZipFile(whl) as z:
            meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
            msg = Parser().parsestr(z.read(meta).decode())
        for spec in msg.get_all("Requires-Dist") or []:
            req = Requirement(spec)
            if req.marker is not None and not req.marker.evaluate(env):
                continue  # an extra, or another platform's
            if norm(req.name) not in want and norm(req.name) not in image:
                problems.append(f"{whl.name} needs {req}: add it to {WHEELS.name}")
    problems += [
        f"no wheel for {n}=={want[n]} in {folder}/" for n in sorted(set(want) - have)
    ]
    return problems


if __name__ == "__main__":
    folder = Path(sys.argv[1])
    problems = check_wheels(folder)
    if problems:
        sys.exit("device_wheels: " + "; ".join(problems))
    n = len(listed(WHEELS))
    print(f"device_wheels: {n} wheels in {folder}/, every requirement covered")
