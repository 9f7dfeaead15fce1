"""`dvc repro` itself, on tiny params, in a temporary git repo."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

pytestmark = pytest.mark.skipif(shutil.which("dvc") is None, reason="dvc not installed")


def _run(cmd: list[str], cwd: Path) -> str:
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    assert r.returncode == 0, f"{cmd} failed:\n{r.stdout}\n{r.stderr}"
    return r.stdout


@pytest.fixture()
def repo(tmp_path, fashion_root) -> Path:
    """A copy of the project's pipeline in a fresh git + dvc repo."""
    work = tmp_path / "repo"
    for name in ("cvae", "stages", "cvae_cli"):
        shutil.copytree(
            ROOT / name, work / name, ignore=shutil.ignore_patterns("__pycache__")
        )
    for name in ("dvc.yaml", "params.yaml", ".gitignore"):
        shutil.copy(ROOT / name, work / name)
    params = yaml.safe_load((work / "params.yaml").read_text())
    f = params["fashion"]
    f["data"].update(root=str(fashion_root), train_limit=512, test_limit=256)
    f["train"].update(epochs=1, device="cpu")
    f["evaluate"]["device"] = "cpu"
    f["fid"].update(samples=100, device="cpu")  # a tiny set may go below 10,000
    f["classifier"].update(epochs=1, device="cpu")
    f["tsne"].update(n_points=100, vae_epochs=1, device="cpu")
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _run(["git", "init", "-q"], work)
    _run(["dvc", "init", "-q"], work)
    return work


def test_dvc_repro_fashion(repo: Path) -> None:
    env_python = Path(sys.executable).parent
    assert (env_python / "dvc").exists() or shutil.which("dvc")
    _run(["dvc", "repro", "fashion_evaluate@fc", "fashion_evaluate@conv"], repo)
    for arch in ("fc", "conv"):
        m = json.loads((repo / "metrics" / f"fashion_{arch}.json").read_text())
        info = json.loads((repo / "info" / f"fashion_{arch}.json").read_text())
        assert m["n"] == 256 and info["arch"] == arch
        # Real FIDs from the offline Inception, against the real-vs-real floor.
        assert m["fid_n"] == 100 and m["fid_recon"] > m["fid_floor"] > 0
        assert m["fid_generate"] > 0
    shown = _run(["dvc", "metrics", "show", "--json"], repo)
    assert "fashion_conv.json" in shown and "ssim" in shown
    # Nothing changed: nothing re-runs.
    assert (
        "didn't change" in _run(["dvc", "repro", "fashion_evaluate@fc"], repo).lower()
        or "up to date" in _run(["dvc", "status"], repo).lower()
    )
    # A change to one arch's model params re-runs that arch only.
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["fashion"]["model"]["fc"]["latent_dim"] = 16
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = _run(["dvc", "status", "--json"], repo)
    changed = set(json.loads(status))
    assert "fashion_train@fc" in changed and "fashion_train@conv" not in changed
