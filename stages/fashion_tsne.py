"""Stage fashion_tsne: latent t-SNE of a plain VAE against the conv CVAE.

The VAE is the CVAE's own architecture (read from the CVAE model file) given one
constant condition: ``num_classes=1`` and label 0 for every image, so the label
carries nothing and it is an honest unconditional VAE. It is trained by the
project's one ``Trainer`` with the ``fashion.train`` optimiser settings for
``fashion.tsne.vae_epochs`` epochs.
"""

from __future__ import annotations

from pathlib import Path

import typer

from cvae.core.files import check_writable, write_record
from cvae.evaluation.tsne import (
    tsne_fashion,
)
from stages._common import Info, load, stage_main


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
