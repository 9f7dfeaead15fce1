"""Stage fashion_fid_ref: Inception statistics of the real Fashion-MNIST test set.

Computed once and shared by every model's evaluation, with the real-vs-real
floor: FID(first ``samples`` training images, first ``samples`` test images),
the FID a perfect model would get with this code and sample size. Protocol:
``samples`` >= 10,000 (grayscale repeated to 3 channels, uint8).
"""

from __future__ import annotations

from pathlib import Path

import typer

from cvae.core.files import check_writable, write_record
from cvae.evaluation.fid_reference import fid_reference
from stages._common import Info, load, stage_main


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
