"""What identifies a training run: the settings that decide its weights, and
a fingerprint of them and its data (a resume state is only taken up by the run
with the same fingerprint)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import torch

from cvae.core import distributed
from cvae.params.schema import TrainParams


def run_fields(cfg: TrainParams) -> dict[str, Any]:
    """The settings that decide the weights, for a run's fingerprint.

    Not the device (``device`` is kept as None), ``num_workers`` nor the memory
    budget; the loader (``coco.train`` only, as resolved from ``auto``) and the
    torchrun world size only when they differ from the single-process in-memory
    loop (whose fingerprint thus does not name them).
    """
    fields = cfg.model_dump() | {"device": None}
    fields.pop("num_workers", None)
    fields.pop("memory_budget_mib", None)
    if fields.get("loader") == "memory":
        del fields["loader"]
    world = distributed.info_from_env().world_size
    if world > 1:
        fields["world_size"] = world
    return fields


def fingerprint(*parts: Any) -> str:
    """sha256 of JSON-able parts and arrays: identifies one training run."""
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, torch.Tensor):
            p = p.detach().cpu().numpy()
        if isinstance(p, np.ndarray):
            h.update(str((p.shape, p.dtype)).encode())
            h.update(np.ascontiguousarray(p).tobytes())
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()
