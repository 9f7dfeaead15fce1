"""The FID reference of Fashion-MNIST: Inception statistics of the real
test set, computed once and shared by every model's evaluation, with the
real-vs-real floor FID(first ``samples`` training images, first ``samples``
test images): the FID a perfect model would get with this code and sample
size. Protocol: ``samples`` >= 10,000 (grayscale repeated to 3 channels, uint8).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cvae.core.device import resolve_device
from cvae.core.errors import CVAEError
from cvae.core.files import atomic_path
from cvae.data import fashion
from cvae.evaluation.fid import FID
from cvae.params.schema import FID_PROTOCOL_N as MIN_SAMPLES
from cvae.params.schema import FidParams


def check_samples(n: int, available: int) -> int:
    """The FID sample size: >= MIN_SAMPLES unless the data set is smaller."""
    if n < 2:
        raise CVAEError(f"fashion.fid.samples={n}: use >= {MIN_SAMPLES} (or 0 to skip)")
    if n < MIN_SAMPLES and available >= MIN_SAMPLES:
        raise CVAEError(
            f"fashion.fid.samples={n} is below the protocol's {MIN_SAMPLES}: raise it"
        )
    return min(n, available)


def fid_reference(params: FidParams, data: Path, weights: Path, out: Path) -> dict:
    """Save (mu, sigma) of the test images and return the train-vs-test floor."""
    d = fashion.load_dataset(data)
    test = torch.from_numpy(d["test_images"]).unsqueeze(1)  # (N, 1, 28, 28) uint8
    train = torch.from_numpy(d["train_images"]).unsqueeze(1)
    if params.samples == 0:  # FID switched off: record that, compute nothing
        with atomic_path(out) as tmp, open(tmp, "wb") as f:
            np.savez(f, n=np.int64(0))
        return {"n": 0, "fid_floor_train_vs_test": None}
    n = check_samples(params.samples, min(len(test), len(train)))
    fid = FID(
        weights,
        device=resolve_device(params.device),
        batch_size=params.batch_size,
    )
    fid.update(test[:n], real=True)
    fid.update(train[:n], real=False)
    mu, sigma = fid.stats(real=True)
    floor = fid.compute()
    with atomic_path(out) as tmp, open(tmp, "wb") as f:
        np.savez(f, mu=mu, sigma=sigma, n=np.int64(n), floor=np.float64(floor))
    return {"n": n, "fid_floor_train_vs_test": floor}


def load_reference(path: Path) -> tuple[np.ndarray, np.ndarray, int, float]:
    """(mu (2048,), sigma (2048, 2048), n, floor) written by :func:`fid_reference`."""
    if not Path(path).is_file():
        raise CVAEError(f"{path} not found: run `dvc repro fashion_fid_ref`")
    with np.load(path, allow_pickle=False) as z:
        return z["mu"], z["sigma"], int(z["n"]), float(z["floor"])
