"""Stage coco_train: a CLIP-conditioned convolutional CVAE on COCO shards.

Reads top-level params ``size``, ``conditioning``, ``condition_on`` and the
section ``coco`` (model, train). The CLIP model is never called here: the
conditions are the embed stage's Parquet vectors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import torch
import typer

from cvae import distributed
from cvae.batches import BatchSource, MemoryBatches
from cvae.checkpoint import save_model
from cvae.clip_weights import clip_width
from cvae.device import resolve_device
from cvae.errors import CVAEError
from cvae.io import check_writable
from cvae.longtext import image_conditions, load_longtext, pick_loader, shard_split
from cvae.models import build_model
from cvae.params import Params
from cvae.shards import shard_index
from cvae.stream import ShardStream, decode_workers, id_lookup
from cvae.train import Trainer, fingerprint, run_fields
from stages._common import load, stage_main, write_live


def model_params(params: Params, cond_dim: int) -> dict:
    """The ImageConfig dict but ``in_channels``: the coco.model section, the
    top-level choices and the embeddings' width (the run's fingerprint)."""
    return params.coco.model.model_dump() | {
        "image_size": params.size,
        "conditioning": params.conditioning,
        "cond_dim": cond_dim,
    }


def train_coco(
    params: Params,
    shards: Path,
    text_emb: Path,
    image_emb: Path,
    model_out: Path,
    history: Path,
    state: Path,
) -> list[dict]:
    """Train on the 'train' split, score the 'val' split loss each epoch.

    The 'val' split is always read from the shards batch by batch; the 'train'
    split is decoded into memory or streamed (``coco.train.loader``).
    """
    on = params.condition_on
    index = shard_index(shards)  # json members only: cheap, read once
    ids, splits = index
    tcfg = params.coco.train
    world = distributed.info_from_env()
    loader = pick_loader(
        tcfg.loader,
        splits.count("train"),
        params.size,
        tcfg.memory_budget_mib,
        world.world_size,
    )
    device = resolve_device(tcfg.device)
    workers = decode_workers(tcfg.num_workers, device)
    # as resolved from auto
    tcfg = tcfg.model_copy(update={"loader": loader, "num_workers": workers})
    val, val_conds = shard_split(
        shards, text_emb, image_emb, condition_on=on, split="val", index=index
    )
    cond_dim = int(val_conds.eval_conds.shape[1])
    width = clip_width(val_conds.clip["model"])
    if cond_dim != width:
        raise CVAEError(
            f"{text_emb if on == 'text' else image_emb} holds {cond_dim}-d vectors "
            f"but CLIP {val_conds.clip['model']} gives {width}-d: re-run coco_embed "
            "(dvc repro coco_embed)"
        )
    channels, _, side = val.image_shape()
    mp = model_params(params, cond_dim)
    torch.manual_seed(tcfg.seed)
    model = build_model("image", mp | {"in_channels": channels})
    if side != mp["image_size"]:
        raise CVAEError(
            f"params size={mp['image_size']} but {shards} holds "
            f"{side} px images: re-run the shard stage (dvc repro)"
        )
    data: BatchSource
    if tcfg.loader == "stream":  # decoded in workers, split by node and worker
        ids = ids[[s == "train" for s in splits]]
        conds = image_conditions(ids, text_emb, image_emb, condition_on=on)
        ids = ids[conds.keep]
        clip_meta = conds.clip
        run_id = fingerprint("image", mp, on, run_fields(tcfg), ids, conds.eval_conds)
        data = ShardStream(
            shards,
            id_lookup(ids, conds.train_conds),
            len(ids),
            tcfg.batch_size,
            seed=tcfg.seed,
            num_workers=tcfg.num_workers,
            info=world,
            pin_memory=device.type == "cuda",
        )
        n_train = len(ids)
    else:  # decoded once, in memory
        train = load_longtext(
            shards, text_emb, image_emb, condition_on=on, split="train"
        )
        clip_meta = train.clip
        run_id = fingerprint(
            "image", mp, on, run_fields(tcfg), train.images, train.eval_conds
        )
        data = MemoryBatches(
            train.images,
            train.train_conds,
            batch_size=tcfg.batch_size,
            seed=tcfg.seed,
            info=world,
        )
        n_train = len(train.ids)
    trainer = Trainer(
        model,
        tcfg,
        data,
        state_path=state,
        history_path=history,
        val=val,
        run_id=run_id,
    )
    hist = trainer.fit()
    if not trainer.dist.is_main:
        return hist  # rank 0 writes the model
    clip = {
        k: clip_meta.get(k)
        for k in ("model", "pretrained", "random_init", "seed", "normalize", "sha256")
    }
    info = {
        "condition": "clip",
        "condition_on": on,
        "clip": clip,
        "dataset": "coco",
        "epochs": tcfg.epochs,
        "n_train": n_train,
        "run_id": run_id,
    }
    save_model(model_out, trainer.model, "image", info)
    return hist


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
        f"{len(hist)} epochs -> {model_out}"
    )


if __name__ == "__main__":
    typer.run(main)
