"""Stage coco_train: a CLIP-conditioned convolutional CVAE on COCO shards.

Reads top-level params ``size``, ``conditioning``, ``condition_on`` and the
section ``coco`` (model, train). The CLIP model is never called here: the
conditions are the embed stage's Parquet vectors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cvae.core import distributed
from cvae.core.files import check_writable
from cvae.training.coco import train_coco
from cvae.training.history import summary
from stages._common import load, stage_main, write_live


@stage_main
def main(
    shards: Path = typer.Option(..., help="shard folder from the shard stage"),
    text_emb: Path = typer.Option(..., help="caption embeddings parquet"),
    image_emb: Path = typer.Option(..., help="image embeddings parquet"),
    model_out: Path = typer.Option(..., help="output model .safetensors"),
    history: Path = typer.Option(..., help="per-epoch metrics JSON (DVC plot)"),
    state: Path = typer.Option(..., help="resume state file (kept only while running)"),
    live: Annotated[
        Path | None, typer.Option(help="DVCLive folder: per-epoch loss and ELBO terms")
    ] = None,
    params: Path = typer.Option(Path("params.yaml"), help="params file"),
) -> None:
    check_writable(model_out, history, state, live)  # before any work
    p = load(params)
    hist = train_coco(p, shards, text_emb, image_emb, model_out, history, state)
    if not distributed.info_from_env().is_main:
        return
    if live is not None:
        write_live(live, hist)
    state.unlink(missing_ok=True)  # every output written: nothing to resume
    print(
        f"coco_train: size {p.size} {p.conditioning} on {p.condition_on}, "
        f"{summary(hist)} -> {model_out}"
    )


if __name__ == "__main__":
    typer.run(main)
