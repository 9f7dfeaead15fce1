"""Long-text training data: shard images joined with their CLIP conditions.

Images come from the WebDataset shards (one ``size``), conditions from the
embeddings Parquet files (independent of size). ``condition_on``:

- ``text``: each image has one sentence-averaged embedding per caption; a
  training step draws one of its captions at random (seeded), evaluation uses
  caption 0.
- ``image``: the CLIP image embedding of the image itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from cvae.core.errors import CVAEError
from cvae.data.embeddings import (
    REBUILD,
    clip_metadata,
    embeddings_table,
    table_vectors,
)
from cvae.data.shards import load_shards, shard_index
from cvae.data.stream import ShardSplit

CONDITION_ON = ("text", "image")


@dataclass
class CaptionChoice:
    """Draw one caption embedding per image: the condition source for training.

    vectors: (M, D) all caption embeddings; first: (N,) index of each image's
    first caption in ``vectors``; count: (N,) its number of captions.
    """

    vectors: torch.Tensor
    first: torch.Tensor
    count: torch.Tensor

    def __call__(self, idx: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        u = torch.rand(len(idx), generator=gen)  # (B,)
        pick = (u * self.count[idx]).long().clamp_max(self.count[idx] - 1)
        return self.vectors[self.first[idx] + pick]  # (B, D)

    def fixed(self) -> torch.Tensor:
        """Caption 0 of every image, (N, D): the evaluation condition."""
        return self.vectors[self.first]


@dataclass
class LongTextData:
    """One split of the long-text data, in memory."""

    ids: np.ndarray  # (N,) COCO image ids
    images: torch.Tensor  # (N, 3, S, S) uint8
    train_conds: CaptionChoice | torch.Tensor  # what a training step draws from
    eval_conds: torch.Tensor  # (N, D) one fixed condition per image
    captions: list[str]  # (N,) caption 0 of each image (for grids and reports)
    clip: dict[str, Any] = field(default_factory=dict)  # embeddings metadata


def _caption_rows(table: pa.Table, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the caption table that belong to the images ``ids``, ordered by
    image id, then caption index -> (rows (M,), their image ids (M,))."""
    if not {"caption_index", "caption"} <= set(table.column_names):
        raise CVAEError(
            "the caption embeddings file has no caption_index/caption columns: "
            f"{REBUILD}"
        )
    img = table.column("image_id").to_numpy()
    mine = np.flatnonzero(np.isin(img, ids))
    cap = table.column("caption_index").to_numpy()[mine]
    order = mine[np.lexsort((cap, img[mine]))]
    return order, img[order]


def check_condition_on(condition_on: str) -> None:
    if condition_on not in CONDITION_ON:
        raise CVAEError(
            f"condition_on {condition_on!r} unknown: use one of {list(CONDITION_ON)}"
        )


@dataclass
class Conditions:
    """The conditions of some images, row k for image k (see ``image_conditions``)."""

    train_conds: CaptionChoice | torch.Tensor  # what a training step draws from
    eval_conds: torch.Tensor  # (N, D)
    captions: list[str]  # (N,) caption 0 of each image
    clip: dict[str, Any]  # what made the vectors (``CLIP_KEYS`` at least)


def _check_covered(
    ids: np.ndarray, have: np.ndarray, path: str | os.PathLike, split: str | None
) -> None:
    """Every image of ``ids`` has a row among ``have`` (ids of an embeddings file):
    embeddings of another manifest, or cut short, are refused."""
    lacking = int(np.count_nonzero(~np.isin(ids, have)))
    if lacking:
        which = f"{split} images" if split else "images"
        raise CVAEError(
            f"{lacking} of the {len(ids)} {which} in the shards have no embedding "
            f"in {path}: {REBUILD}"
        )


def image_conditions(
    ids: np.ndarray,
    text_embeddings: str | os.PathLike,
    image_embeddings: str | os.PathLike,
    *,
    condition_on: str,
    split: str | None = None,
) -> Conditions:
    """Conditions of the images ``ids`` (N,), in their order.

    Every image must have its embeddings (the embed stage embeds all the
    manifest's images the shard stage could read) and the files must say which
    CLIP made them; else one line naming the fix. ``split`` names the images in
    that line.
    """
    check_condition_on(condition_on)
    table = embeddings_table(text_embeddings)  # every image's captions
    clip_meta = clip_metadata(table, text_embeddings)
    order, cap_ids = _caption_rows(table, ids)  # (M,) only the given images' rows
    uniq, first, count = np.unique(cap_ids, return_index=True, return_counts=True)
    _check_covered(ids, uniq, text_embeddings, split)
    if condition_on == "image":
        image_table = embeddings_table(image_embeddings)
        image_meta = clip_metadata(image_table, image_embeddings)
        if image_meta["model"] != clip_meta["model"]:
            raise CVAEError(
                f"{image_embeddings} was made with CLIP {image_meta['model']} but "
                f"{text_embeddings} with {clip_meta['model']}: {REBUILD}"
            )
        img_ids = image_table.column("image_id").to_numpy()
        _check_covered(ids, img_ids, image_embeddings, split)
        img_pos = {int(i): k for k, i in enumerate(img_ids)}
        img_vecs = table_vectors(image_table)
        clip_meta = image_meta

    rows = np.searchsorted(uniq, ids)  # (N,) every id is in uniq (sorted)
    # Only these images' caption vectors, image by image (a split holds its own
    # captions, not the whole table's): one copy out of the table's buffer.
    sel_first, sel_count = first[rows], count[rows]
    new_first = np.cumsum(sel_count) - sel_count
    take = np.arange(sel_count.sum()) + np.repeat(sel_first - new_first, sel_count)
    captions = table.column("caption").take(pa.array(order[sel_first])).to_pylist()
    choice = CaptionChoice(
        vectors=torch.from_numpy(table_vectors(table)[order[take]]),
        first=torch.from_numpy(new_first),
        count=torch.from_numpy(sel_count),
    )
    del table
    pa.default_memory_pool().release_unused()  # its pool keeps freed pages
    if condition_on == "text":
        train_conds: CaptionChoice | torch.Tensor = choice
        eval_conds = choice.fixed()
    else:
        vecs = torch.from_numpy(img_vecs[[img_pos[int(i)] for i in ids]])
        train_conds = eval_conds = vecs
    return Conditions(train_conds, eval_conds, captions, dict(clip_meta))


def _empty_split(split: str | None, shard_dir: str | os.PathLike) -> CVAEError:
    return CVAEError(
        f"no {split} images in {shard_dir}: check filter.val_fraction and the data"
    )


def load_longtext(
    shard_dir: str | os.PathLike,
    text_embeddings: str | os.PathLike,
    image_embeddings: str | os.PathLike,
    *,
    condition_on: str,
    split: str | None,
) -> LongTextData:
    """Images of ``split`` ('train', 'val' or None for all) with their conditions.

    Every image must have its embeddings (``image_conditions``).
    """
    check_condition_on(condition_on)  # before the shards are read
    ids, images, _ = load_shards(shard_dir, split, channels_first=True)
    if not len(ids):
        raise _empty_split(split, shard_dir)
    c = image_conditions(
        ids, text_embeddings, image_embeddings, condition_on=condition_on, split=split
    )
    return LongTextData(
        ids=ids,
        images=torch.from_numpy(images),  # (N, 3, S, S) uint8, no copy
        train_conds=c.train_conds,
        eval_conds=c.eval_conds,
        captions=c.captions,
        clip=c.clip,
    )


def shard_split(
    shard_dir: str | os.PathLike,
    text_embeddings: str | os.PathLike,
    image_embeddings: str | os.PathLike,
    *,
    condition_on: str,
    split: str,
    index: tuple[np.ndarray, list[str]] | None = None,
) -> tuple[ShardSplit, Conditions]:
    """A split that stays in the shards (read batch by batch, in written order,
    with its fixed evaluation conditions) and the conditions of its images.

    index: ``shard_index(shard_dir)`` when already read. Every image must have
    its embeddings (``image_conditions``).
    """
    check_condition_on(condition_on)
    ids, splits = index if index is not None else shard_index(shard_dir)
    ids = ids[[s == split for s in splits]]
    if not len(ids):
        raise _empty_split(split, shard_dir)
    c = image_conditions(
        ids, text_embeddings, image_embeddings, condition_on=condition_on, split=split
    )
    return ShardSplit(shard_dir, split, ids, c.eval_conds), c


# Peak bytes per raw uint8 pixel byte while the set is loaded: images are decoded
# straight into one NCHW array.
IN_MEMORY_PEAK = 1.0


def pick_loader(
    loader: str, n_train: int, size: int, budget_mib: int, world_size: int
) -> str:
    """``memory`` or ``stream``: ``auto`` keeps the training set in memory when
    the peak of loading it (``IN_MEMORY_PEAK`` x its uint8 pixels, in each of
    ``world_size`` processes on the node) fits ``budget_mib``."""
    if loader != "auto":
        return loader
    need = n_train * 3 * size * size * IN_MEMORY_PEAK * world_size / 2**20
    return "memory" if need <= budget_mib else "stream"
