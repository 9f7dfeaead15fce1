"""The same inputs and params give the same bytes, whatever the machine's thread
count or CPU features: each stage runs twice in fresh processes, once with the
environment a 1-core machine and a different vector ISA would bring."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, write_params

ENVS = [  # what differs between machines: threads, the CPU's vector ISA
    {"OMP_NUM_THREADS": "1", "ATEN_CPU_CAPABILITY": "default"},
    {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"},
]


def run_stage(module: str, env: dict[str, str], **options: Path | str) -> None:
    cmd = [sys.executable, "-m", f"stages.{module}"]
    for key, value in options.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    r = subprocess.run(
        cmd, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr[-2000:]


@pytest.mark.parametrize("module", ["fashion_classifier", "fashion_train"])
def test_training_stage_bytes_do_not_depend_on_the_machine(
    module: str, tiny_fashion: Path, tmp_path: Path
) -> None:
    params = write_params(
        tmp_path / "p.yaml",
        {
            "fashion": {
                "model": {"conv": {"channels": [8, 16, 32], "latent_dim": 8}},
                "train": {"epochs": 1, "device": "cpu"},
                "classifier": {"epochs": 1, "device": "cpu"},
            }
        },
    )
    outs = []
    for i, env in enumerate(ENVS):
        out = tmp_path / f"run{i}"
        if module == "fashion_classifier":
            run_stage(
                module,
                env,
                data=tiny_fashion,
                model_out=out / "m.safetensors",
                metrics=out / "m.json",
                params=params,
            )
        else:
            run_stage(
                module,
                env,
                arch="conv",
                data=tiny_fashion,
                model_out=out / "m.safetensors",
                history=out / "h.json",
                state=out / "s.pt",
                live=out / "live",
                params=params,
            )
        outs.append(
            {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
        )
    assert outs[0].keys() == outs[1].keys() and len(outs[0]) >= 2
    assert outs[0] == outs[1]


def test_this_cpu_gives_the_reference_cpus_bytes(
    fashion_root: Path, coco_sample: Path
) -> None:
    """The committed claim: the short check (one epoch of each model, CLIP,
    FID's algebra, t-SNE) gives the reference CPU's bytes on this CPU."""
    r = subprocess.run(
        [sys.executable, "-m", "benchmarks.same_bytes"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    lines = r.stdout.splitlines()  # training's epoch lines come first
    at = next(i for i, line in enumerate(lines) if line.startswith("this CPU:"))
    assert lines[at + 1].startswith("reference CPU:")
    assert lines[-1] == "10 of 10 outputs are the reference's bytes"


def test_the_check_names_what_differs() -> None:
    from benchmarks.same_bytes import REFERENCE, compare

    ref = json.loads(REFERENCE.read_text())
    new = json.loads(REFERENCE.read_text())
    new["outputs"]["fc 1 epoch"]["md5"] = "0" * 32
    new["outputs"]["fc 1 epoch"]["val_loss"] += 0.5
    new["settings"] = "other"
    lines = compare(ref, new)
    fc = next(line for line in lines if "fc 1 epoch" in line)
    assert "DIFFERENT BYTES" in fc and "(reference " in fc
    assert any(line.startswith("! the settings differ") for line in lines)
    n = len(ref["outputs"])
    assert lines[-1] == f"{n - 1} of {n} outputs are the reference's bytes"


def test_the_op_probe_reports_each_library() -> None:
    env = {**os.environ, "MKL_CBWR": "COMPATIBLE", "T": "1"}
    r = subprocess.run(
        [sys.executable, "-m", "benchmarks.numerics_ops"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout)
    assert {"MKL (torch)", "oneDNN", "ATen", "OpenBLAS (NumPy)"} <= set(out)
    assert out["in force"]["MKL_CBWR"] == "COMPATIBLE"
    assert all(len(v) == 8 for v in out["oneDNN"].values())
