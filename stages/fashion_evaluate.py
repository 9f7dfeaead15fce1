"""Stage fashion_evaluate: Table 1 metrics of one Fashion-MNIST CVAE on the test set."""

from __future__ import annotations

from pathlib import Path

import torch
import typer

from cvae import fashion
from cvae.checkpoint import load_model
from cvae.classifier import conditioning_metrics
from cvae.device import resolve_device
from cvae.evaluation import (
    comparison_grid,
    fid_to_reference,
    generate_per_condition,
    generation_grid,
    reconstruction_metrics,
)
from cvae.fid import FID
from cvae.io import write_json
from cvae.sampling import save_grid
from cvae.train import to_float_images
from stages._common import load_params, stage_main
from stages.fashion_fid_ref import load_reference


def evaluate_fashion(
    params: dict,
    data: Path,
    model_path: Path,
    recon_grid: Path,
    gen_grid: Path,
    *,
    fid_params: dict | None = None,
    fid_weights: Path | None = None,
    fid_ref: Path | None = None,
    classifier: Path | None = None,
) -> dict:
    """Reconstruction MSE/SSIM (and FID) on the whole test split, two PNG grids."""
    device = resolve_device(params.get("device", "auto"))
    model, meta = load_model(model_path, device, expect_arch=("fc", "conv"))
    d = fashion.load_dataset(data)
    images = torch.from_numpy(d["test_images"]).unsqueeze(1)  # (N, 1, 28, 28) uint8
    labels = torch.from_numpy(d["test_labels"])
    nrow = int(params.get("grid_n", 10))
    n_fid = int((fid_params or {}).get("samples", 0)) if fid_weights else 0
    metrics, recons = reconstruction_metrics(
        model,
        images,
        labels,
        batch_size=int(params.get("batch_size", 500)),
        keep=max(nrow * 4, n_fid),
    )
    originals = to_float_images(images[: nrow * 4])
    grid = comparison_grid(originals, recons[: nrow * 4], nrow)
    save_grid(grid, recon_grid, nrow=nrow)
    classes = meta["info"].get("classes", [str(i) for i in range(10)])
    conds = [torch.tensor(i) for i in range(len(classes))]
    gen = generation_grid(model, conds, nrow, seed=int(params.get("seed", 0)))
    save_grid(gen, gen_grid, nrow=nrow)
    metrics.update(
        {
            "arch": meta["arch"],
            "conditioning": meta["config"]["conditioning"],
            "epochs": meta["info"].get("epochs"),
            "fid_recon": None,  # null when FID is off (samples: 0); never a fake value
            "fid_generate": None,
        }
    )
    if classifier is not None:  # does a generation show the requested class?
        metrics.update(
            conditioning_metrics(
                model,
                classifier,
                n_per_class=int(params.get("cond_n_per_class", 1000)),
                seed=int(params.get("seed", 0)),
            )
        )
    if n_fid:
        fid = FID(
            fid_weights,
            device=device,
            batch_size=int(fid_params.get("batch_size", 100)),
        )
        metrics.update(fashion_fid(model, recons, conds, fid, fid_params, fid_ref))
    return metrics


def fashion_fid(
    model, recons: torch.Tensor, conds: list, fid: FID, fid_params: dict, ref: Path
) -> dict:
    """FID of reconstructions and of class-balanced generations vs the test set.

    Both sets have ``samples`` images (generations: samples / classes per class),
    scored against the real test statistics; the real-vs-real floor is copied
    from the reference so each model's FID is reported beside it.
    """
    mu, sigma, n_ref, floor = load_reference(ref)
    n = min(int(fid_params["samples"]), len(recons))
    gen = generate_per_condition(
        model, conds, n // len(conds), seed=int(fid_params.get("seed", 0))
    )
    return {
        "fid_recon": fid_to_reference(fid, (mu, sigma), recons[:n]),
        "fid_generate": fid_to_reference(fid, (mu, sigma), gen),
        "fid_floor": floor,
        "fid_n": n,
        "fid_n_reference": n_ref,
    }


@stage_main
def main(
    data: Path = typer.Option(..., help="dataset .npz from fashion_data"),
    model: Path = typer.Option(..., help="model .safetensors from fashion_train"),
    metrics: Path = typer.Option(..., help="output metrics JSON"),
    recon_grid: Path = typer.Option(..., help="output reconstruction grid PNG"),
    gen_grid: Path = typer.Option(..., help="output per-class generation grid PNG"),
    fid_weights: Path = typer.Option(None, help="Inception weights (fid_weights)"),
    fid_ref: Path = typer.Option(None, help="real statistics (fashion_fid_ref)"),
    classifier: Path = typer.Option(None, help="classifier (fashion_classifier)"),
    params: Path = typer.Option(Path("params.yaml"), help="params file"),
) -> None:
    section = load_params("fashion", params)
    m = evaluate_fashion(
        section.get("evaluate", {}),
        data,
        model,
        recon_grid,
        gen_grid,
        fid_params=section.get("fid"),
        fid_weights=fid_weights,
        fid_ref=fid_ref,
        classifier=classifier,
    )
    write_json(metrics, m)
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
