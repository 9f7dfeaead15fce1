"""Stage fashion_fid_ref: Inception statistics of the real Fashion-MNIST test set.

Computed once and shared by every model's evaluation, with the real-vs-real
floor: FID(first ``samples`` training images, first ``samples`` test images),
the FID a perfect model would get with this code and sample size. Protocol:
``samples`` >= 10,000 (grayscale repeated to 3 channels, uint8).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import typer

from cvae import fashion
from cvae.device import resolve_device
from cvae.errors import CVAEError
from cvae.fid import FID
from cvae.io import atomic_path, check_writable, write_record
from cvae.params import FID_PROTOCOL_N as MIN_SAMPLES
from cvae.params import FidParams
from stages._common import Info, load, stage_main


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


@stage_main
def main(
    data: Path = typer.Option(..., help="dataset .npz from fashion_data"),
    weights: Path = typer.Option(..., help="Inception weights from fid_weights"),
    out: Path = typer.Option(..., help="output reference statistics .npz"),
    metrics: Path = typer.Option(..., help="output JSON with the real-vs-real floor"),
    info: Info = None,
    params: Path = typer.Option(Path("params.yaml"), help="params file"),
) -> None:
    check_writable(out, metrics, info)  # before any work
    m = fid_reference(load(params).fashion.fid, data, weights, out)
    write_record(metrics, info, m)
    if m["n"] == 0:
        print("fashion_fid_ref: FID off (fashion.fid.samples: 0)")
        return
    print(
        f"fashion_fid_ref: floor FID(train, test) = {m['fid_floor_train_vs_test']:.3f}"
        f" on {m['n']} + {m['n']} images"
    )


if __name__ == "__main__":
    typer.run(main)
