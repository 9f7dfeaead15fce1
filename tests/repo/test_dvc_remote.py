"""Sharing results: push to a local-folder DVC remote, clone, pull, and nothing
re-runs (the README's `dvc remote add` / `dvc push` / `dvc pull` example)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, dump_yaml, merge, repo_params

pytestmark = pytest.mark.skipif(shutil.which("dvc") is None, reason="dvc not installed")
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}


def sh(cwd: Path, *cmd: str) -> str:
    r = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True)
    assert r.returncode == 0, f"{cmd}: {r.stdout}{r.stderr}"
    return r.stdout + r.stderr


def test_push_then_pull_into_a_fresh_clone_reruns_nothing(
    fashion_root: Path, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    for name in ("cvae", "stages"):
        shutil.copytree(
            ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__")
        )
    for name in ("dvc.yaml", ".gitignore", ".dvcignore"):
        shutil.copy(ROOT / name, repo / name)
    data = {"root": str(fashion_root), "train_limit": 256, "test_limit": 128}
    params = merge(repo_params(), {"fashion": {"data": data}})
    (repo / "params.yaml").write_text(dump_yaml(params))
    git = ("git", "-c", "user.name=t", "-c", "user.email=t@t")
    sh(repo, "git", "init", "-q")
    sh(repo, "dvc", "init", "-q")
    sh(repo, "dvc", "repro", "fashion_data")
    store = tmp_path / "store"
    sh(repo, "dvc", "remote", "add", "-d", "store", str(store))
    sh(repo, "git", "add", "-A")
    sh(repo, *git, "commit", "-qm", "fashion data")
    assert "2 files pushed" in sh(repo, "dvc", "push")

    clone = tmp_path / "clone"
    sh(tmp_path, "git", "clone", "-q", str(repo), str(clone))
    assert not (clone / "data" / "fashion" / "dataset.npz").exists()
    sh(clone, "dvc", "pull", "check_params", "fashion_data")
    ours = clone / "data" / "fashion" / "dataset.npz"
    assert ours.read_bytes() == (repo / "data" / "fashion" / "dataset.npz").read_bytes()
    status = sh(clone, "dvc", "status", "check_params", "fashion_data")
    assert "up to date" in status, status
    again = sh(clone, "dvc", "repro", "fashion_data")
    assert "didn't change, skipping" in again and "Running stage" not in again
    assert sh(clone, "git", "status", "--porcelain") == ""
