"""Training the COCO CVAE on shards: CLIP vectors (caption or image
embeddings) as conditions, the 'train' split in memory or streamed, the 'val'
split scored each epoch. CLIP itself is never called: the conditions are the
embedding run's Parquet vectors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cvae.clip.configs import clip_width
from cvae.core import distributed
from cvae.core.device import resolve_device
from cvae.core.distributed import DistInfo
from cvae.core.errors import CVAEError
from cvae.data.batches import BatchSource, MemoryBatches
from cvae.data.pairs import image_conditions, load_longtext, pick_loader, shard_split
from cvae.data.shards import shard_index
from cvae.data.stream import ShardStream, decode_workers, id_lookup
from cvae.models import build_model
from cvae.models.checkpoint import save_model
from cvae.params.schema import CocoTrain, Params
from cvae.training.identity import fingerprint, run_fields
from cvae.training.trainer import Trainer


def model_params(params: Params, cond_dim: int) -> dict:
    """The ImageConfig dict but ``in_channels``: the coco.model section, the
    top-level choices and the embeddings' width (the run's fingerprint)."""
    return params.coco.model.model_dump() | {
        "image_size": params.size,
        "conditioning": params.conditioning,
        "cond_dim": cond_dim,
    }


def resolve_train(
    tcfg: CocoTrain, *, n_train: int, size: int, world: DistInfo
) -> CocoTrain:
    """``coco.train`` with every ``auto`` decided, once: the device, the loader
    (in memory when the training pixels fit the budget, else streamed) and the
    stream's decoding workers. Everything below reads these fields as they are."""
    loader = pick_loader(
        tcfg.loader, n_train, size, tcfg.memory_budget_mib, world.world_size
    )
    device = resolve_device(tcfg.device)
    workers = decode_workers(tcfg.num_workers, device)
    return tcfg.model_copy(
        update={"device": str(device), "loader": loader, "num_workers": workers}
    )


def check_clip(
    clip: dict[str, Any], cond_dim: int, *, embed_model: str, path: Path
) -> None:
    """The conditions are ``embed.model``'s vectors: the model the embeddings
    file records, and its width. ``cvae generate`` embeds prompts with the CLIP
    the model file names, so a model trained on another CLIP's vectors would be
    prompted in a space it never saw."""
    fix = "re-run coco_embed (dvc repro coco_embed)"
    if clip["model"] != embed_model:
        raise CVAEError(
            f"{path} was made with CLIP {clip['model']} but embed.model is "
            f"{embed_model}: {fix}"
        )
    width = clip_width(embed_model)
    if cond_dim != width:
        raise CVAEError(
            f"{path} holds {cond_dim}-d vectors but CLIP {embed_model} gives "
            f"{width}-d: {fix}"
        )


@dataclass
class TrainSet:
    """The 'train' split as the Trainer reads it, and what identifies it."""

    source: BatchSource
    clip: dict[str, Any]  # what made the condition vectors
    identity: tuple[Any, ...]  # the arrays that enter the run's fingerprint
    n: int  # training images


def train_set(
    tcfg: CocoTrain,
    shards: Path,
    text_emb: Path,
    image_emb: Path,
    *,
    condition_on: str,
    index: tuple[np.ndarray, list[str]],
    world: DistInfo,
) -> TrainSet:
    """The 'train' split decoded once into memory, or streamed from the shards
    (decoded in workers, split by node and worker), as ``tcfg.loader`` says."""
    if tcfg.loader == "stream":
        ids, splits = index
        ids = ids[[s == "train" for s in splits]]
        conds = image_conditions(
            ids, text_emb, image_emb, condition_on=condition_on, split="train"
        )
        source: BatchSource = ShardStream(
            shards,
            id_lookup(ids, conds.train_conds),
            len(ids),
            tcfg.batch_size,
            seed=tcfg.seed,
            num_workers=tcfg.num_workers,
            info=world,
            pin_memory=tcfg.device.startswith("cuda"),
        )
        return TrainSet(source, conds.clip, (ids, conds.eval_conds), len(ids))
    train = load_longtext(
        shards, text_emb, image_emb, condition_on=condition_on, split="train"
    )
    source = MemoryBatches(
        train.images,
        train.train_conds,
        batch_size=tcfg.batch_size,
        seed=tcfg.seed,
        info=world,
    )
    return TrainSet(
        source, train.clip, (train.images, train.eval_conds), len(train.ids)
    )


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
    world = distributed.info_from_env()
    tcfg = resolve_train(
        params.coco.train,
        n_train=index[1].count("train"),
        size=params.size,
        world=world,
    )
    val, val_conds = shard_split(
        shards, text_emb, image_emb, condition_on=on, split="val", index=index
    )
    cond_dim = int(val_conds.eval_conds.shape[1])
    check_clip(
        val_conds.clip,
        cond_dim,
        embed_model=params.embed.model,
        path=text_emb if on == "text" else image_emb,
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
    train = train_set(
        tcfg, shards, text_emb, image_emb, condition_on=on, index=index, world=world
    )
    run_id = fingerprint("image", mp, on, run_fields(tcfg), *train.identity)
    trainer = Trainer(
        model,
        tcfg,
        train.source,
        state_path=state,
        history_path=history,
        val=val,
        run_id=run_id,
    )
    hist = trainer.fit()
    if not trainer.dist.is_main:
        return hist  # rank 0 writes the model
    clip = {
        k: train.clip.get(k)
        for k in ("model", "pretrained", "random_init", "seed", "normalize", "sha256")
    }
    info = {
        "condition": "clip",
        "condition_on": on,
        "clip": clip,
        "dataset": "coco",
        "epochs": tcfg.epochs,
        "n_train": train.n,
        "run_id": run_id,
    }
    save_model(model_out, trainer.model, "image", info)
    return hist
