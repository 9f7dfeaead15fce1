"""Stage fashion_evaluate: Table 1 metrics of one Fashion-MNIST CVAE on the test set."""

from __future__ import annotations

from pathlib import Path

import torch
import typer

from cvae import fashion
from cvae.checkpoint import load_model
from cvae.device import resolve_device
from cvae.evaluation import comparison_grid, generation_grid, reconstruction_metrics
from cvae.io import write_json
from cvae.sampling import save_grid
from cvae.train import to_float_images
from stages._common import load_params, stage_main


def evaluate_fashion(
    params: dict, data: Path, model_path: Path, recon_grid: Path, gen_grid: Path
) -> dict:
    """Reconstruction MSE/SSIM on the whole test split, and the two PNG grids."""
    device = resolve_device(params.get("device", "auto"))
    model, meta = load_model(model_path, device)
    d = fashion.load_dataset(data)
    images = torch.from_numpy(d["test_images"]).unsqueeze(1)  # (N, 1, 28, 28) uint8
    labels = torch.from_numpy(d["test_labels"])
    nrow = int(params.get("grid_n", 10))
    metrics, recons = reconstruction_metrics(
        model,
        images,
        labels,
        batch_size=int(params.get("batch_size", 500)),
        keep=nrow * 4,
    )
    originals = to_float_images(images[: len(recons)])
    save_grid(comparison_grid(originals, recons, nrow), recon_grid, nrow=nrow)
    classes = meta["info"].get("classes", [str(i) for i in range(10)])
    conds = [torch.tensor(i) for i in range(len(classes))]
    gen = generation_grid(model, conds, nrow, seed=int(params.get("seed", 0)))
    save_grid(gen, gen_grid, nrow=nrow)
    metrics.update(
        {
            "arch": meta["arch"],
            "conditioning": meta["config"]["conditioning"],
            "epochs": meta["info"].get("epochs"),
            "fid": None,  # offline FID: see the evaluation issue; never a fake value
        }
    )
    return metrics


@stage_main
def main(
    data: Path = typer.Option(..., help="dataset .npz from fashion_data"),
    model: Path = typer.Option(..., help="model .safetensors from fashion_train"),
    metrics: Path = typer.Option(..., help="output metrics JSON"),
    recon_grid: Path = typer.Option(..., help="output reconstruction grid PNG"),
    gen_grid: Path = typer.Option(..., help="output per-class generation grid PNG"),
    params: Path = typer.Option(Path("params.yaml"), help="params file"),
) -> None:
    p = load_params("fashion", params).get("evaluate", {})
    m = evaluate_fashion(p, data, model, recon_grid, gen_grid)
    write_json(metrics, m)
    print(
        f"fashion_evaluate[{m['arch']}]: MSE {m['mse']:.4f} SSIM {m['ssim']:.4f} "
        f"on {m['n']} test images"
    )


if __name__ == "__main__":
    typer.run(main)
