"""Stage fashion_train: train one Fashion-MNIST CVAE (arch fc or conv)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import torch
import typer

from cvae import distributed, fashion
from cvae.batches import MemoryBatches, MemorySplit
from cvae.checkpoint import save_model
from cvae.errors import CVAEError
from cvae.io import check_writable
from cvae.models import GMMCVAE, build_model
from cvae.params import TRAIN_OVERRIDES, Fashion, FashionModels
from cvae.text import CLASS_NAMES
from cvae.train import Trainer, fingerprint, run_fields
from stages._common import load, stage_main, write_live


def train_fashion(
    arch: str, params: Fashion, data: Path, model_out: Path, history: Path, state: Path
) -> list[dict]:
    """Train ``arch`` with ``params.model.<arch>`` and ``params.train`` (whose
    ``TRAIN_OVERRIDES`` fields the model section may replace); a model with a
    fitted prior (``gmm``) then fits it to the training posteriors."""
    model_params = getattr(params.model, arch).model_dump()
    overrides = {k: model_params.pop(k) for k in TRAIN_OVERRIDES if k in model_params}
    tcfg = params.train.model_copy(update=overrides)
    d = fashion.load_dataset(data)
    images = torch.from_numpy(d["train_images"]).unsqueeze(1)  # (N, 1, 28, 28) uint8
    labels = torch.from_numpy(d["train_labels"])  # (N,) int64
    val = (
        torch.from_numpy(d["test_images"]).unsqueeze(1),
        torch.from_numpy(d["test_labels"]),
    )
    torch.manual_seed(tcfg.seed)  # initial weights
    shape = {  # what the data decides
        "image_size": images.shape[-1],
        "in_channels": images.shape[1],
        "num_classes": len(CLASS_NAMES),
    }
    model = build_model(arch, model_params | shape)
    run_id = fingerprint(arch, model_params, run_fields(tcfg), images, labels)
    trainer = Trainer(
        model,
        tcfg,
        MemoryBatches(images, labels, batch_size=tcfg.batch_size, seed=tcfg.seed),
        state_path=state,
        history_path=history,
        val=MemorySplit(*val),
        run_id=run_id,
    )
    hist = trainer.fit()
    if not trainer.dist.is_main:
        return hist  # rank 0 writes the model
    if isinstance(trainer.model, GMMCVAE):  # p(z | c) from the training posteriors
        trainer.model.fit_prior(
            images, labels, batch_size=tcfg.batch_size, seed=tcfg.seed
        )
    info = {
        "condition": "label",
        "classes": list(CLASS_NAMES),
        "dataset": "fashion-mnist",
        "epochs": tcfg.epochs,
        "n_train": len(images),
        "run_id": run_id,
    }
    save_model(model_out, trainer.model, arch, info)
    return hist


@stage_main
def main(
    arch: str = typer.Option(..., help="fc, conv or gmm"),
    data: Path = typer.Option(..., help="dataset .npz from fashion_data"),
    model_out: Path = typer.Option(..., help="output model .safetensors"),
    history: Path = typer.Option(..., help="per-epoch metrics JSON (DVC plot)"),
    state: Path = typer.Option(..., help="resume state file (kept only while running)"),
    live: Annotated[
        Path | None, typer.Option(help="DVCLive folder: per-epoch loss and ELBO terms")
    ] = None,
    params: Path = typer.Option(Path("params.yaml"), help="params file"),
) -> None:
    check_writable(model_out, history, state, live)  # before any work
    if arch not in FashionModels.model_fields:
        raise CVAEError(
            f"--arch {arch!r}: use one of {list(FashionModels.model_fields)}"
        )
    p = load(params).fashion
    hist = train_fashion(arch, p, data, model_out, history, state)
    if not distributed.info_from_env().is_main:
        return
    if live is not None:
        write_live(live, hist)
    state.unlink(missing_ok=True)  # every output written: nothing to resume
    last = hist[-1] if hist else {}
    print(f"fashion_train[{arch}]: {len(hist)} epochs, last {last} -> {model_out}")


if __name__ == "__main__":
    typer.run(main)
