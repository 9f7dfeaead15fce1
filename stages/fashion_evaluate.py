"""Stage fashion_evaluate: Table 1 metrics of one Fashion-MNIST CVAE on the test set."""

from __future__ import annotations

from pathlib import Path

import typer

from cvae.core.files import check_writable, write_record
from cvae.evaluation.fashion import evaluate_fashion
from cvae.experiments.lineage import flat_params
from stages._common import Info, load, stage_main

# The params behind this stage's outputs: its own and its ancestors' in dvc.yaml
# (tests/repo/test_dvc_yaml.py checks the list). Recorded in the info file, so a
# report can tell outputs that are not from their revision's params.
LINEAGE = (
    "cpu_threads",
    "fashion.data",
    "fashion.classifier",
    "fashion.model.{arch}",
    "fashion.train",
    "fashion.evaluate",
    "fashion.fid",
)


@stage_main
def main(
    data: Path = typer.Option(..., help="dataset .npz from fashion_data"),
    model: Path = typer.Option(..., help="model .safetensors from fashion_train"),
    metrics: Path = typer.Option(..., help="output metrics JSON"),
    info: Info = None,
    recon_grid: Path = typer.Option(..., help="output reconstruction grid PNG"),
    gen_grid: Path = typer.Option(..., help="output per-class generation grid PNG"),
    fid_weights: Path = typer.Option(None, help="Inception weights (fid_weights)"),
    fid_ref: Path = typer.Option(None, help="real statistics (fashion_fid_ref)"),
    classifier: Path = typer.Option(None, help="classifier (fashion_classifier)"),
    params: Path = typer.Option(Path("params.yaml"), help="params file"),
) -> None:
    check_writable(metrics, recon_grid, gen_grid, info)  # before any work
    p = load(params)
    section = p.fashion
    m = evaluate_fashion(
        section.evaluate,
        data,
        model,
        recon_grid,
        gen_grid,
        fid_params=section.fid,
        fid_weights=fid_weights,
        fid_ref=fid_ref,
        classifier=classifier,
    )
    lineage = [key.format(arch=m["arch"]) for key in LINEAGE]
    write_record(metrics, info, m, params=flat_params(p, lineage))
    fid = (
        f", FID recon {m['fid_recon']:.2f} gen {m['fid_generate']:.2f}"
        if (m["fid_recon"] is not None)
        else ""
    )
    print(
        f"fashion_evaluate[{m['arch']}]: MSE {m['mse']:.4f} SSIM {m['ssim']:.4f} "
        f"on {m['n']} test images{fid}"
        + (
            f", conditioning accuracy {m['cond_accuracy']:.3f}"
            if "cond_accuracy" in m
            else ""
        )
    )


if __name__ == "__main__":
    typer.run(main)
