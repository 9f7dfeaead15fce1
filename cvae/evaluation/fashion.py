"""Evaluating a Fashion-MNIST CVAE on the test split (Table 1):
reconstruction MSE and SSIM, conditioning accuracy, FID against the shared
reference, and the reconstruction and generation grids.
"""

from __future__ import annotations

from pathlib import Path

import torch

from cvae.core.device import resolve_device
from cvae.data import fashion
from cvae.data.prompts import by_class
from cvae.evaluation.conditioning import conditioning_metrics
from cvae.evaluation.fid import FID
from cvae.evaluation.fid_reference import load_reference
from cvae.evaluation.sampling import save_grid
from cvae.evaluation.scores import (
    comparison_grid,
    fid_to_reference,
    generate_per_condition,
    generation_grid,
    reconstruction_metrics,
)
from cvae.models import FASHION_ARCHS
from cvae.models.base import to_float_images
from cvae.models.checkpoint import load_model
from cvae.params.schema import FashionEvaluate, FidParams

LABELS_PX = 84  # width of the grids' label column (class names)


def evaluate_fashion(
    params: FashionEvaluate,
    data: Path,
    model_path: Path,
    recon_grid: Path,
    gen_grid: Path,
    *,
    fid_params: FidParams | None = None,
    fid_weights: Path | None = None,
    fid_ref: Path | None = None,
    classifier: Path | None = None,
) -> dict:
    """Reconstruction MSE/SSIM (and FID) on the whole test split, two PNG grids."""
    device = resolve_device(params.device)
    model, meta = load_model(model_path, device, expect_arch=FASHION_ARCHS)
    d = fashion.load_dataset(data)
    images = torch.from_numpy(d["test_images"]).unsqueeze(1)  # (N, 1, 28, 28) uint8
    labels = torch.from_numpy(d["test_labels"])
    nrow = params.grid_n
    n_fid = fid_params.samples if (fid_params and fid_weights) else 0
    metrics, recons = reconstruction_metrics(
        model,
        images,
        labels,
        batch_size=params.batch_size,
        keep=max(nrow * 4, n_fid),
    )
    originals = to_float_images(images[: nrow * 4])
    grid = comparison_grid(originals, recons[: nrow * 4], nrow)
    pairs = ["original", "reconstructed"] * (len(grid) // (2 * nrow))
    save_grid(grid, recon_grid, nrow=nrow, row_labels=pairs, label_width=LABELS_PX)
    classes = meta["info"].get("classes", [str(i) for i in range(10)])
    conds = [torch.tensor(i) for i in range(len(classes))]
    gen = generation_grid(model, conds, nrow, seed=params.seed)
    save_grid(gen, gen_grid, nrow=nrow, row_labels=classes, label_width=LABELS_PX)
    metrics.update(
        {
            "arch": meta["arch"],
            "conditioning": meta["config"]["conditioning"],
            "epochs": meta["info"].get("epochs"),
            "n_train": meta["info"].get("n_train"),
            "fid_recon": None,  # null when FID is off (samples: 0); never a fake value
            "fid_generate": None,
        }
    )
    if classifier is not None:  # does a generation show the requested class?
        cond = conditioning_metrics(
            model,
            classifier,
            images,
            labels,
            n_per_class=params.cond_n_per_class,
            seed=params.seed,
        )
        for key in ("cond_accuracy_per_class", "real_accuracy_per_class"):
            cond[key] = by_class(cond[key])
        metrics.update(cond)
    if n_fid:
        fid = FID(
            fid_weights,
            device=device,
            batch_size=fid_params.batch_size,
        )
        metrics.update(fashion_fid(model, recons, conds, fid, fid_params, fid_ref))
    return metrics


def fashion_fid(
    model, recons: torch.Tensor, conds: list, fid: FID, fid_params: FidParams, ref: Path
) -> dict:
    """FID of reconstructions and of class-balanced generations vs the test set.

    Both sets have ``samples`` images (generations: samples / classes per class),
    scored against the real test statistics; the real-vs-real floor is copied
    from the reference so each model's FID is reported beside it.
    """
    mu, sigma, n_ref, floor = load_reference(ref)
    n = min(fid_params.samples, len(recons))
    gen = generate_per_condition(model, conds, n // len(conds), seed=fid_params.seed)
    return {
        "fid_recon": fid_to_reference(fid, (mu, sigma), recons[:n]),
        "fid_generate": fid_to_reference(fid, (mu, sigma), gen),
        "fid_floor": floor,
        "fid_n": n,
        "fid_n_reference": n_ref,
    }
