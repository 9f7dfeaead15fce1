"""Stage fashion_tsne: latent t-SNE of a plain VAE against the conv CVAE.

The VAE is the CVAE's own architecture (read from the CVAE model file) given one
constant condition: ``num_classes=1`` and label 0 for every image, so the label
carries nothing and it is an honest unconditional VAE. It is trained by the
project's one ``Trainer`` with the ``fashion.train`` optimiser settings for
``fashion.tsne.vae_epochs`` epochs.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch
import typer

from cvae import fashion
from cvae.batches import MemoryBatches
from cvae.checkpoint import load_model
from cvae.device import resolve_device
from cvae.io import check_writable, write_record
from cvae.models import ConditionalVAE, build_model
from cvae.params import TrainParams, TsneParams
from cvae.text import CLASS_NAMES
from cvae.train import Trainer
from cvae.tsne import latent_means, plot_embeddings, silhouette, tsne_2d
from stages._common import Info, load, stage_main


def train_vae(
    cvae_config: dict[str, Any],
    train_params: TrainParams,
    images: torch.Tensor,
    *,
    epochs: int,
    seed: int,
    device: str,
) -> tuple[ConditionalVAE, list[dict[str, Any]]]:
    """The conv CVAE architecture with one constant label, trained on images.

    images: uint8 (N, 1, 28, 28). Returns (model in eval mode, history).
    """
    vae_config = dict(cvae_config) | {"num_classes": 1}
    tcfg = train_params.model_copy(
        update={"epochs": epochs, "seed": seed, "device": device}
    )
    torch.manual_seed(seed)  # initial weights
    model = build_model("conv", vae_config)
    zeros = torch.zeros(len(images), dtype=torch.int64)  # (N,) the one condition
    with tempfile.TemporaryDirectory(prefix="cvae-vae-") as tmp:
        data = MemoryBatches(images, zeros, batch_size=tcfg.batch_size, seed=seed)
        trainer = Trainer(model, tcfg, data, state_path=Path(tmp) / "resume.pt")
        history = trainer.fit()
    return trainer.model.eval(), history


def tsne_fashion(
    params: TsneParams,
    train_params: TrainParams,
    data: Path,
    cvae_path: Path,
    plot: Path,
) -> dict[str, Any]:
    """Train the VAE, embed n_points test images with both models, plot, score."""
    n_points, seed, perplexity = params.n_points, params.seed, params.perplexity
    device = resolve_device(params.device)
    cvae, meta = load_model(cvae_path, device, expect_arch="conv")
    d = fashion.load_dataset(data)
    train_images = torch.from_numpy(d["train_images"]).unsqueeze(1)  # (N, 1, 28, 28)
    test_images, test_labels = fashion.subset(
        d["test_images"], d["test_labels"], n_points, seed
    )
    images = torch.from_numpy(test_images).unsqueeze(1)  # (n, 1, 28, 28) uint8
    labels = torch.from_numpy(test_labels)  # (n,) int64

    vae, history = train_vae(
        meta["config"],
        train_params,
        train_images,
        epochs=params.vae_epochs,
        seed=seed,
        device=params.device,
    )
    models = {
        "vae": (vae, torch.zeros_like(labels), "VAE (no condition)"),
        "cvae": (cvae, labels, f"CVAE ({meta['config']['conditioning']})"),
    }
    out: dict[str, Any] = {
        "n_points": len(labels),
        "perplexity": perplexity,
        "seed": seed,
    }
    panels = []
    for name, (model, conds, title) in models.items():
        z = latent_means(model, images, conds)  # (n, L)
        emb = tsne_2d(z, seed, perplexity=perplexity)  # (n, 2)
        scores = {
            "silhouette_tsne": silhouette(emb, test_labels),
            "silhouette_latent": silhouette(z, test_labels),
        }
        out[name] = scores
        panels.append((f"{title}: silhouette {scores['silhouette_tsne']:.2f}", emb))
    out["vae"] |= {"epochs": len(history), "final_loss": history[-1]["loss"]}
    out["cvae"] |= {"epochs": meta["info"].get("epochs")}
    plot_embeddings(panels, test_labels, plot, class_names=CLASS_NAMES)
    return out


@stage_main
def main(
    data: Path = typer.Option(..., help="dataset .npz from fashion_data"),
    model: Path = typer.Option(..., help="conv CVAE .safetensors from fashion_train"),
    plot: Path = typer.Option(..., help="output PNG: VAE | CVAE t-SNE panels"),
    metrics: Path = typer.Option(..., help="output metrics JSON (silhouettes)"),
    info: Info = None,
    params: Path = typer.Option(Path("params.yaml"), help="params file"),
) -> None:
    check_writable(plot, metrics, info)  # before any work
    p = load(params).fashion
    m = tsne_fashion(p.tsne, p.train, data, model, plot)
    write_record(metrics, info, m)
    print(
        f"fashion_tsne: silhouette of {m['n_points']} test points by class, "
        f"VAE {m['vae']['silhouette_tsne']:.3f}, "
        f"CVAE {m['cvae']['silhouette_tsne']:.3f} -> {plot}"
    )


if __name__ == "__main__":
    typer.run(main)
