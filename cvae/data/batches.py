"""Where training and held-out batches come from: one interface, two sources.

The Trainer sees only two protocols:

- ``BatchSource`` (training): ``steps`` batches per epoch on this rank, in an
  order fixed by (seed, epoch), each ``(uint8 images (B, C, H, W), conditions)``.
- ``HeldOut`` (scoring): every item once, in a fixed order, in batches of a
  size the caller picks.

``MemoryBatches`` / ``MemorySplit`` serve a set decoded into memory (a strided
rank share of a seeded permutation per epoch); ``cvae.data.stream.ShardStream`` /
``cvae.data.stream.ShardSplit`` serve WebDataset shards without holding them, so
a set of any size trains and is scored in bounded memory. ``cvae.data.pairs``
picks between them from the set's size and a memory budget.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Protocol

import torch

from cvae.core import distributed
from cvae.core.distributed import DistInfo

# A condition source: a tensor indexed by item (labels (N,) or vectors (N, D)),
# or a function (item indices (B,), generator) -> conditions (B, ...).
Conditions = torch.Tensor | Callable[[torch.Tensor, torch.Generator], torch.Tensor]

Batch = tuple[torch.Tensor, torch.Tensor]  # (uint8 images (B, C, H, W), conditions)

# The uint8 training set goes to the GPU once when it is smaller than this; a
# larger one stays in pinned host memory for asynchronous copies.
ON_GPU_BYTES = 4 * 2**30


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's data order (in memory and streamed)."""
    return seed * 100_003 + epoch


def epoch_order(seed: int, epoch: int, n: int) -> tuple[torch.Generator, torch.Tensor]:
    """(generator, permutation of n items) that depend on (seed, epoch) only.

    A resumed run thus sees the same batches as an uninterrupted one.
    """
    gen = torch.Generator().manual_seed(epoch_seed(seed, epoch))
    return gen, torch.randperm(n, generator=gen)


def select(conds: Conditions, idx: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """The conditions of items ``idx`` (B,): indexed, or drawn with ``gen``."""
    return conds(idx, gen) if callable(conds) else conds[idx]


class BatchSource(Protocol):
    """Training batches of one epoch, the same on every run with the same seed."""

    steps: int  # batches per epoch on this rank (equal on every rank)
    items: int  # items per epoch on all ranks together

    def epoch(self, epoch: int) -> Iterator[Batch]:
        """``steps`` batches of (uint8 images (B, C, H, W), conditions (B, ...))."""
        ...

    def place(self, device: torch.device) -> None:
        """Move what the source holds next to ``device`` (before the first epoch)."""
        ...


class HeldOut(Protocol):
    """Every held-out item once, in a fixed order."""

    def __len__(self) -> int: ...

    def ordered(self, batch_size: int) -> Iterator[Batch]:
        """Batches of ``batch_size`` (the last may be short), same order each time."""
        ...


class MemorySplit:
    """A split held in memory: uint8 images (N, C, H, W) and their conditions."""

    def __init__(self, images: torch.Tensor, conds: Conditions) -> None:
        self.images = images
        self.conds = conds

    def __len__(self) -> int:
        return len(self.images)

    def ordered(self, batch_size: int) -> Iterator[Batch]:
        gen = torch.Generator().manual_seed(0)  # for drawn conditions only
        for start in range(0, len(self.images), batch_size):
            idx = torch.arange(start, min(start + batch_size, len(self.images)))
            yield self.images[idx], select(self.conds, idx, gen)


class MemoryBatches(MemorySplit):
    """Training batches from memory: each epoch a seeded permutation
    (``epoch_order``), of which rank r of W takes the strided share r, r + W, ...
    (``distributed.rank_share``), cut into batches of ``batch_size``."""

    def __init__(
        self,
        images: torch.Tensor,
        conds: Conditions,
        *,
        batch_size: int,
        seed: int,
        info: DistInfo | None = None,
    ) -> None:
        super().__init__(images, conds)
        self.batch_size = batch_size
        self.seed = seed
        self.info = info or distributed.info_from_env()  # this torchrun rank
        share = len(distributed.rank_share(torch.arange(len(images)), self.info))
        self.steps = math.ceil(share / batch_size)
        self.items = share * self.info.world_size

    def place(self, device: torch.device) -> None:
        if device.type != "cuda":
            return
        small = self.images.nbytes < ON_GPU_BYTES
        self.images = self.images.to(device) if small else self.images.pin_memory()

    def epoch(self, epoch: int) -> Iterator[Batch]:
        gen, perm = epoch_order(self.seed, epoch, len(self.images))
        mine = distributed.rank_share(perm, self.info)
        bs = self.batch_size
        for s in range(self.steps):
            idx = mine[s * bs : (s + 1) * bs]
            yield self.images[idx], select(self.conds, idx, gen)
