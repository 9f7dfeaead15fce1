"""Image files decoded and preprocessed in DataLoader workers, in a fixed order.

The main process runs the model on batch k while workers decode and resize the
next ones; with no worker process, one daemon thread reads the next batch (PIL
decodes and resizes without holding the GIL). Batches hold the readable files among
``batch_size`` consecutive paths, in path order, so what the model sees (and so
every output byte) is the same for any worker count.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Subset

from cvae.core.distributed import DistInfo, batches_of_rank
from cvae.data.shards import ImageReadError, load_rgb

Transform = Callable[[Image.Image], torch.Tensor]
T = TypeVar("T")
_END = object()


class PreprocessedFiles(Dataset):
    """Item i: ``transform(load_rgb(paths[i]))``, or None when it cannot be read."""

    def __init__(self, paths: Sequence[str | os.PathLike], transform: Transform):
        self.paths = list(paths)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor | None:
        try:
            return self.transform(load_rgb(self.paths[i]))
        except (ImageReadError, FileNotFoundError):
            return None


def _keep(items: list[torch.Tensor | None]) -> tuple[list[int], torch.Tensor | None]:
    """(positions read, their stacked tensors) of one batch of items."""
    ok = [k for k, x in enumerate(items) if x is not None]
    return ok, torch.stack([items[k] for k in ok]) if ok else None


def preprocessed_batches(
    paths: Sequence[str | os.PathLike],
    transform: Transform,
    *,
    batch_size: int,
    num_workers: int,
    dist: DistInfo | None = None,
) -> Iterator[tuple[list[int], torch.Tensor | None]]:
    """(indices of ``paths`` read, pixels (B, ...)) per ``batch_size`` paths;
    under torchrun (``dist``) only this rank's batches (``batches_of_rank``)."""
    cuts = batches_of_rank(len(paths), batch_size, dist or DistInfo())
    index = [i for cut in cuts for i in cut]  # whole batches: the same cuts
    loader = DataLoader(
        Subset(PreprocessedFiles(paths, transform), index),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_keep,
    )
    batches = loader if num_workers else one_ahead(loader)
    for cut, (ok, pixels) in zip(cuts, batches, strict=True):
        yield [cut.start + i for i in ok], pixels


def one_ahead(items: Iterable[T]) -> Iterator[T]:
    """``items`` in order, each produced in a background thread while the
    caller works on the one before.

    The thread is a daemon: a caller that stops (Ctrl-C) does not wait for the
    item in the making, neither here nor when the interpreter exits.
    """
    it = iter(items)
    wanted: queue.SimpleQueue[bool] = queue.SimpleQueue()
    made: queue.SimpleQueue[tuple[bool, Any]] = queue.SimpleQueue()

    def make() -> None:
        while wanted.get():
            try:
                item = next(it, _END)
            except BaseException as e:  # noqa: BLE001 - raised in the caller
                made.put((False, e))
                return
            made.put((True, item))
            if item is _END:
                return

    threading.Thread(target=make, name="one_ahead", daemon=True).start()
    wanted.put(True)
    try:
        while True:
            ok, item = made.get()
            if not ok:
                raise item
            if item is _END:
                return
            wanted.put(True)
            yield item
    finally:  # a caller that stops early lets the thread end after its item
        wanted.put(False)
