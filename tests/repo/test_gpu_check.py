"""The GPU check's packaging (benchmarks/gpu_check.sh): what the lent machine
lacks travels as wheels, and the list of them is complete and locked."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

from conftest import ROOT

from scripts.device_lists import IMAGE, WHEELS, listed, norm

LOCAL = {"cvae", "cvae_cli", "stages", "benchmarks", "conftest", "tests"}
# Imported by modules the check loads, in code the check does not run.
NOT_RUN = {
    "dvclive": "stages._common.write_live, called by stage mains only",
    "starlette": "cvae demo only",
    "uvicorn": "cvae demo only",
    "dvc_render": "cvae plots-template only",
    "vl_convert": "cvae plots-template only",
}
# What the check runs: the library, the CLI, the stages it calls, the benchmarks,
# and the CUDA tests with their fixtures.
REACHED = [
    *sorted((ROOT / "cvae").rglob("*.py")),
    *sorted((ROOT / "cvae_cli").rglob("*.py")),
    *sorted((ROOT / "stages").rglob("*.py")),
    *sorted((ROOT / "benchmarks").glob("*.py")),
    ROOT / "tests" / "conftest.py",
    ROOT / "tests" / "unit" / "training" / "test_cuda.py",
]


def top_level_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_every_third_party_import_is_on_the_image_or_in_the_wheels() -> None:
    dists = packages_distributions()
    allowed = set(listed(WHEELS)) | set(listed(IMAGE))
    missing = {}
    for path in REACHED:
        for name in top_level_imports(path):
            if name in sys.stdlib_module_names or name in LOCAL | set(NOT_RUN):
                continue
            owners = {norm(d) for d in dists.get(name, [name])}
            if not owners & allowed:
                missing[name] = (
                    f"{sorted(owners)} (imported by {path.relative_to(ROOT)})"
                )
    assert not missing, f"add to {WHEELS.name}: {missing}"


def test_wheels_are_the_locked_versions_and_not_on_the_image() -> None:
    lock = dict(
        re.findall(
            r"^([A-Za-z0-9_.-]+)==([^\s\\]+)",
            (ROOT / "requirements.lock").read_text(),
            re.M,
        )
    )
    lock = {norm(k): v for k, v in lock.items()}
    image = listed(IMAGE)
    for name, version in listed(WHEELS).items():
        assert version, f"{name}: pin an exact version in {WHEELS.name}"
        assert lock.get(name) == version, (
            f"{name}=={version}, lock has {lock.get(name)}"
        )
        assert name not in image, f"{name} is on the image already: drop its wheel"


def test_the_check_scripts_parse_and_refuse_without_prepared_data(tmp_path) -> None:
    for script in ("benchmarks/gpu_check.sh", "scripts/device_wheels.sh"):
        subprocess.run(["bash", "-n", str(ROOT / script)], check=True)
    r = subprocess.run(
        ["bash", str(ROOT / "benchmarks/gpu_check.sh"), "--bogus"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "unknown argument --bogus" in r.stderr
