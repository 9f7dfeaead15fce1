"""A wrong value given to `dvc exp run -S` fails within seconds in check_params,
before DVC deletes any stage's outputs: the previous outputs stay byte-identical.
Run with the real `dvc` in a temporary git repository holding the pipeline."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, merge, repo_params

pytestmark = pytest.mark.skipif(shutil.which("dvc") is None, reason="dvc not installed")


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file of the workspace's outputs (data/, metrics/, plots/)."""
    return {
        str(f.relative_to(root)): f.read_bytes()
        for d in ("data", "metrics", "plots")
        for f in sorted((root / d).rglob("*"))
        if f.is_file()
    }


@pytest.fixture(scope="module")
def trained(coco_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pipeline up to coco_train, on the COCO sample with tiny settings."""
    work = tmp_path_factory.mktemp("dvc-params") / "repo"
    for name in ("cvae", "stages"):
        shutil.copytree(
            ROOT / name, work / name, ignore=shutil.ignore_patterns("__pycache__")
        )
    for name in ("dvc.yaml", ".gitignore", ".dvcignore"):
        shutil.copy(ROOT / name, work / name)
    tiny = {
        "coco_data": {
            "images": str(coco_sample / "images"),
            "captions": str(coco_sample / "captions.json"),
        },
        "embed": {"model": "ViT-S-32-alt", "device": "cpu", "batch_size": 64},
        "coco": {
            "model": {"base_channels": 4, "latent_dim": 8, "embed_dim": 8},
            "train": {"epochs": 1, "batch_size": 16, "device": "cpu"},
        },
    }
    params = merge(repo_params(), tiny)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git(work, "init", "-q")
    dvc(work, "init", "-q")
    dvc(work, "repro", "coco_train")
    git(work, "add", "-A")
    git(work, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base")
    return work


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def dvc(cwd: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    r = subprocess.run(
        ["dvc", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    if ok:
        assert r.returncode == 0, r.stdout + r.stderr
    return r


@pytest.mark.parametrize(
    "setting, message",
    [
        ("size=100", "params.yaml: size = 100: use one of 64, 128, 256"),
        (
            "conditioning=foo",
            "params.yaml: conditioning = 'foo': input should be 'concat' or 'add'",
        ),
        (
            "coco.train.lr=fast",
            "params.yaml: coco.train.lr = 'fast': a number is required, not str",
        ),
        (
            "+shard.image_fromat=jpg",
            "unknown key shard.image_fromat: did you mean shard.image_format?",
        ),
    ],
)
def test_a_bad_exp_run_value_keeps_every_output(
    trained: Path, setting: str, message: str
) -> None:
    before = snapshot(trained)
    assert "data/coco/model.safetensors" in before
    t0 = time.monotonic()
    r = dvc(trained, "exp", "run", "-S", setting, ok=False)
    seconds = time.monotonic() - t0
    out = r.stdout + r.stderr
    assert r.returncode != 0 and message in out, out
    assert "Traceback" not in out
    errors = [line for line in out.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], out  # one line
    assert snapshot(trained) == before  # nothing deleted, nothing rewritten
    assert seconds < 60, f"the check took {seconds:.0f} s"
    git(trained, "checkout", "params.yaml")  # DVC leaves the -S edit in place
