"""Work split across ``torchrun`` ranks: process group, ranks, reductions,
per-rank batches and results gathered on rank 0.

``torchrun --nproc-per-node=N -m stages.coco_train ...`` sets ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK``; :func:`setup` then joins the process group
(NCCL on CUDA, gloo on CPU) and each rank trains a DistributedDataParallel copy
of the model on its own share of the data. Without those variables everything
here is a no-op and training is the single-process loop.

Every rank must run the same number of steps with equal batch sizes (DDP's
gradient all-reduce is a collective): :func:`rank_share` cuts an epoch's
permutation into equal per-rank slices, dropping at most ``world_size - 1``
items. The shard and embed stages split whole batches or shards by rank
(:func:`batches_of_rank`) and gather their results on rank 0, which writes.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from cvae.core.errors import CVAEError


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in a torchrun job (rank 0 of 1 when alone)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes the outputs (state, history, model)."""
        return self.rank == 0


def info_from_env() -> DistInfo:
    """DistInfo from torchrun's environment variables (alone when unset)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as e:
        raise CVAEError(f"bad torchrun environment ({e}): launch with torchrun") from e
    if world < 1 or not 0 <= rank < world:
        raise CVAEError(f"RANK={rank} WORLD_SIZE={world} is inconsistent: use torchrun")
    return DistInfo(rank=rank, world_size=world, local_rank=local)


def cpus_per_rank() -> int:
    """This node's CPUs shared by its torchrun ranks (``LOCAL_WORLD_SIZE``)."""
    local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, (os.cpu_count() or 1) // max(local_ranks, 1))


def setup(device: torch.device, timeout_s: float = 600.0) -> DistInfo:
    """Join the process group when launched by torchrun; return this rank's info.

    The backend follows the device: NCCL for CUDA, gloo for CPU.
    """
    info = info_from_env()
    if info.enabled and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    return info


def rank_device(device: torch.device, info: DistInfo) -> torch.device:
    """The device of this rank: cuda:LOCAL_RANK for CUDA jobs, else unchanged."""
    if device.type == "cuda" and info.enabled:
        return torch.device("cuda", info.local_rank)
    return device


def rank_share(perm: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """This rank's equal share of an epoch permutation (strided, remainder dropped)."""
    if not info.enabled:
        return perm
    usable = len(perm) - len(perm) % info.world_size
    if usable == 0:
        raise CVAEError(
            f"{len(perm)} training items cannot be shared by {info.world_size} "
            "ranks: use fewer processes"
        )
    return perm[:usable][info.rank :: info.world_size]


def all_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum of ``t`` over ranks (``t`` itself when alone); ``t`` is reduced in place."""
    if info.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def teardown(info: DistInfo) -> None:
    """Leave the process group (no-op when alone or never joined)."""
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def gather_to_main(obj: Any, info: DistInfo) -> list[Any] | None:
    """Every rank's ``obj`` in rank order on rank 0 (``[obj]`` when alone);
    None on the other ranks. Objects are pickled: for results, not tensors
    in the training loop."""
    if not info.enabled:
        return [obj]
    out: list[Any] | None = [None] * info.world_size if info.is_main else None
    dist.gather_object(obj, out, dst=0)
    return out


def batches_of_rank(n: int, batch_size: int, info: DistInfo) -> list[range]:
    """This rank's batches of ``range(n)`` cut into ``batch_size`` pieces:
    batches r, r + W, ... Whole batches, cut as one process cuts them, so every
    item meets the same batch neighbours for any world size."""
    cuts = [range(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]
    return cuts[info.rank :: info.world_size]
