"""Training batches streamed from WebDataset shards (data larger than memory,
and data-parallel training).

Each epoch opens the shards with ``wds.split_by_node`` (rank r of W reads
shards r, r + W, ...) and ``wds.split_by_worker`` (each DataLoader worker of a
rank reads its own share of those), repeats them, shuffles samples in a buffer,
keeps one split, decodes the images in the workers and batches them there.
Every rank takes exactly ``steps = n_items // (W * batch_size)`` full batches
per epoch, so the ranks' DDP collectives always line up. The conditions are
looked up in the main process from the image ids (seeded by seed, epoch and
rank), so the workers carry no embedding tables.

Unlike the in-memory loop, the order depends on the worker count and is not
bit-reproducible across runs; use ``loader: memory`` when that matters.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import signal
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader

from cvae.core.distributed import DistInfo, cpus_per_rank
from cvae.core.errors import CVAEError, plural
from cvae.data.batches import Batch, epoch_seed
from cvae.data.shards import (
    damaged_shard,
    decode_sample,
    iter_split,
    shard_paths,
)

# (image ids (B,), generator) -> conditions (B, ...)
ConditionLookup = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def _decode(sample: dict[str, Any]) -> tuple[int, torch.Tensor, str]:
    with damaged_shard(sample.get("__url__", "?")):
        image_id, image, meta = decode_sample(sample)
    pixels = torch.from_numpy(image.copy()).permute(2, 0, 1)  # PIL's is read-only
    return image_id, pixels, str(meta.get("split"))


def _worker_error(e: CVAEError) -> CVAEError:
    """A CVAEError raised in a DataLoader worker, as its one line: the loader
    re-raises it with the worker's traceback, the message on its last line."""
    last = str(e).strip().splitlines()[-1] if str(e).strip() else ""
    return CVAEError(last.split("CVAEError: ", 1)[-1]) if "\n" in str(e) else e


# Most decoding processes ``auto`` starts per rank on CUDA.
CUDA_WORKERS = 4


def decode_workers(requested: int | str, device: torch.device) -> int:
    """DataLoader workers per rank for the stream loader.

    ``auto``: none on CPU, where the training process decodes its own batches
    (a 256 px step costs some 50 PNG decodes, and a worker would only add a
    process and a shuffle buffer, a large part of the process tree at 256 px);
    on CUDA, where the GPU must be kept fed, min(4, this node's CPUs over its
    ranks). A number is taken as it is.
    """
    if requested != "auto":
        return int(requested)
    if device.type != "cuda":
        return 0
    return min(CUDA_WORKERS, cpus_per_rank())


# Module-level (picklable) steps: DataLoader workers may be spawned, not forked.
def _in_split(split: str | None, s: tuple[int, torch.Tensor, str]) -> bool:
    return split is None or s[2] == split


def _drop_split(s: tuple[int, torch.Tensor, str]) -> tuple[int, torch.Tensor]:
    return s[0], s[1]


@contextlib.contextmanager
def _ctrl_c_held() -> Iterator[None]:
    """SIGINT blocked while DataLoader workers start, so that they keep it
    blocked: a terminal sends Ctrl-C to every process of the run, and the
    training process alone answers it (it stops its workers itself). A Ctrl-C
    meanwhile reaches it as the block ends."""
    if not hasattr(signal, "pthread_sigmask"):  # not POSIX
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _stop_workers(batches: Iterator[Any] | None) -> None:
    """Stop a DataLoader iterator's worker processes now (nothing to do without
    workers). Left to its finaliser, the shutdown swallows a Ctrl-C that lands
    during it, and after an interrupted epoch it runs into the interpreter's
    own shutdown, where the workers' exit is reported as a traceback."""
    stop = getattr(batches, "_shutdown_workers", None)  # torch's own shutdown
    if stop is not None:
        stop()


class ShardStream:
    """``steps`` batches of (uint8 images (B, 3, S, S), conditions) per epoch."""

    def __init__(
        self,
        shard_dir: str | os.PathLike,
        lookup: ConditionLookup,
        n_items: int,
        batch_size: int,
        *,
        num_workers: int,
        split: str | None = "train",
        seed: int = 0,
        shuffle_buffer: int = 1000,
        info: DistInfo | None = None,
        pin_memory: bool = False,
    ) -> None:
        self.urls = [str(p) for p in shard_paths(shard_dir)]
        self.info = info or DistInfo()
        self.lookup = lookup
        self.batch_size = batch_size
        self.split = split
        self.seed = seed
        self.shuffle_buffer = shuffle_buffer
        self.pin_memory = pin_memory
        if len(self.urls) < self.info.world_size:
            raise CVAEError(
                f"{plural(len(self.urls), 'shard')} in {shard_dir} cannot feed "
                f"{self.info.world_size} ranks (one shard each at least): lower "
                f"shard.shard_size to get >= {self.info.world_size} shards"
            )
        # A reader (worker, or the rank itself with 0 workers) needs a shard of
        # its own: a small set gets fewer workers, never an error.
        self.num_workers = min(num_workers, len(self.urls) // self.info.world_size)
        self.steps = n_items // (self.info.world_size * batch_size)
        self.items = self.steps * batch_size * self.info.world_size
        if self.steps < 1:
            ranks = self.info.world_size
            each = f" on each of {ranks} ranks" if ranks > 1 else ""
            raise CVAEError(
                f"{plural(n_items, 'item')}: no full batch of {batch_size}{each}: "
                "lower batch_size"
            )

    def _dataset(self, epoch: int) -> wds.WebDataset:
        return (
            wds.WebDataset(
                self.urls,
                repeat=True,
                shardshuffle=len(self.urls),
                seed=epoch_seed(self.seed, epoch),
                nodesplitter=wds.split_by_node,
                workersplitter=wds.split_by_worker,
                empty_check=False,
            )
            .shuffle(self.shuffle_buffer)
            .map(_decode)
            .select(functools.partial(_in_split, self.split))
            .map(_drop_split)
            .batched(self.batch_size, partial=False)
        )

    def place(self, device: torch.device) -> None:
        """Nothing is held: batches are decoded as they are needed."""

    def epoch(self, epoch: int) -> Iterator[Batch]:
        """This epoch's batches; closing the generator stops the workers."""
        loader = DataLoader(
            self._dataset(epoch),
            batch_size=None,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
        )
        gen = torch.Generator().manual_seed(
            epoch_seed(self.seed, epoch) * 1_000 + self.info.rank
        )
        batches = None
        try:
            with _ctrl_c_held():
                batches = iter(loader)  # starts the workers
            for ids, images in itertools.islice(batches, self.steps):
                yield images, self.lookup(torch.as_tensor(ids), gen)
        except CVAEError as e:
            raise _worker_error(e) from None
        finally:
            _stop_workers(batches)


class ShardSplit:
    """A held-out split read from the shards in written order, batch by batch,
    never held in memory (``cvae.data.batches.HeldOut``).

    ids: (K,) the split's image ids that have conditions, in written order;
    conds: (K, ...) their conditions, row k for ids[k]. Images of the split
    that are not in ``ids`` are skipped.
    """

    def __init__(
        self,
        shard_dir: str | os.PathLike,
        split: str,
        ids: np.ndarray,
        conds: torch.Tensor,
    ) -> None:
        self.shard_dir = shard_dir
        self.split = split
        self.ids = ids
        self.conds = conds
        self.row = {int(i): r for r, i in enumerate(ids)}

    def __len__(self) -> int:
        return len(self.ids)

    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the split's first image (decodes that one only)."""
        for _, image, _ in iter_split(self.shard_dir, self.split):
            return (image.shape[2], image.shape[0], image.shape[1])
        raise CVAEError(f"no {self.split} images in {self.shard_dir}: re-run shard")

    def ordered(self, batch_size: int) -> Iterator[Batch]:
        images: list[np.ndarray] = []
        rows: list[int] = []
        for image_id, image, _ in iter_split(self.shard_dir, self.split):
            r = self.row.get(image_id)
            if r is None:
                continue  # not one of ``ids``
            images.append(image)
            rows.append(r)
            if len(rows) == batch_size:
                yield self._batch(images, rows)
                images, rows = [], []
        if rows:
            yield self._batch(images, rows)

    def _batch(self, images: list[np.ndarray], rows: list[int]) -> Batch:
        x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
        return x, self.conds[torch.tensor(rows)]


def id_lookup(
    ids: np.ndarray, conds: torch.Tensor | Callable[..., torch.Tensor]
) -> ConditionLookup:
    """A ConditionLookup over rows: ``conds`` indexed (or called) by the row of each id.

    ids: (N,) image ids in row order; conds: (N, D) vectors, or a row-indexed
    source such as ``cvae.data.pairs.CaptionChoice``.
    """
    row = {int(i): r for r, i in enumerate(ids)}

    def lookup(batch_ids: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        try:
            rows = torch.tensor([row[int(i)] for i in batch_ids])
        except KeyError as e:
            raise CVAEError(
                f"image {e.args[0]} of the shards has no embedding: re-run "
                "coco_embed (dvc repro coco_embed)"
            ) from None
        return conds(rows, gen) if callable(conds) else conds[rows]

    return lookup
