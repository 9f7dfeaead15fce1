"""Latent-space t-SNE of a VAE against a CVAE (the seed article's figure).

A plain VAE must put the class into z, so its posterior means cluster by class;
a CVAE receives the class as its condition, so z is free to hold the rest (style,
thickness, ...) and its latent space looks more uniform across classes. The
silhouette score of the 2-D embedding by true class puts a number on the picture:
high for class clusters, near 0 for well-mixed classes.

Shape letters: N points, L latent size.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.manifold import TSNE
from sklearn.metrics import silhouette_score

from cvae.core.device import resolve_device
from cvae.core.errors import CVAEError, plural
from cvae.core.files import atomic_path
from cvae.data import fashion
from cvae.data.batches import MemoryBatches
from cvae.data.prompts import CLASS_NAMES
from cvae.evaluation.sampling import batches
from cvae.models import ConditionalVAE, build_model
from cvae.models.base import to_float_images
from cvae.models.checkpoint import load_model
from cvae.params.schema import TrainParams, TsneParams
from cvae.training.trainer import Trainer


@torch.no_grad()
def latent_means(
    model: ConditionalVAE,
    images: torch.Tensor,
    conds: torch.Tensor,
    *,
    batch_size: int = 500,
) -> np.ndarray:
    """Posterior means mu of q(z | x, c), (N, L) float32, batched, in eval mode.

    images: uint8 (N, C, H, W) or float in [0, 1]; conds: (N,) labels or (N, D).
    """
    if len(images) != len(conds):
        raise CVAEError(
            f"{plural(len(images), 'image')} but {plural(len(conds), 'condition')}"
        )
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = [np.empty((0, model.latent_dim), dtype=np.float32)]
    for sl in batches(len(images), batch_size):
        x = to_float_images(images[sl]).to(device)  # (B, C, H, W)
        mu, _ = model.encode(x, conds[sl].to(device))  # (B, L)
        out.append(mu.float().cpu().numpy())
    model.train(was_training)
    return np.concatenate(out)


def tsne_2d(latents: np.ndarray, seed: int, *, perplexity: float = 30.0) -> np.ndarray:
    """2-D t-SNE embedding (N, 2) of latents (N, L): PCA init, fixed seed."""
    n = len(latents)
    if not 0 < perplexity < n:
        raise CVAEError(
            f"t-SNE perplexity {perplexity} must be > 0 and below the number of "
            f"points ({n}): lower perplexity or raise n_points"
        )
    tsne = TSNE(
        n_components=2,
        perplexity=perplexity,
        init="pca",
        learning_rate="auto",
        random_state=seed,
    )
    return tsne.fit_transform(np.asarray(latents, dtype=np.float64))


def silhouette(points: np.ndarray, labels: np.ndarray) -> float:
    """Silhouette score (Euclidean) of points (N, k) grouped by labels (N,)."""
    if len(np.unique(labels)) < 2:
        raise CVAEError("silhouette needs at least two classes among the points")
    return float(silhouette_score(points, labels, metric="euclidean"))


def plot_embeddings(
    panels: Sequence[tuple[str, np.ndarray]],
    labels: np.ndarray,
    path: str | os.PathLike,
    *,
    class_names: Sequence[str] = CLASS_NAMES,
    panel_size: float = 5.0,
) -> None:
    """Write side-by-side scatter plots (one per (title, (N, 2))) as PNG, atomically.

    Points are coloured by class (``labels`` (N,)), with one legend of the class
    names. Uses the Agg canvas directly (no pyplot state); the PNG carries no
    software-version metadata, so the same embeddings give the same bytes.
    """
    labels = np.asarray(labels)
    fig = Figure(figsize=(panel_size * len(panels) + 2.2, panel_size), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    cmap = colormaps["tab10"]
    handles = []
    for ax, (title, emb) in zip(axes, panels, strict=True):
        if emb.shape != (len(labels), 2):
            raise CVAEError(
                f"panel {title!r}: embedding {emb.shape} is not ({len(labels)}, 2)"
            )
        handles = []
        for k, name in enumerate(class_names):
            mask = labels == k
            handles.append(
                ax.scatter(
                    emb[mask, 0], emb[mask, 1], s=4, color=cmap(k % 10), label=name
                )
            )
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.legend(
        handles=handles,
        loc="center right",
        markerscale=3,
        frameon=False,
        title="class",
    )
    fig.tight_layout(rect=(0, 0, 1 - 2.0 / fig.get_figwidth(), 1))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})


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
