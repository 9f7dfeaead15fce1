"""Device choice shared by training, evaluation, CLIP and the CLI.

The project runs on the CPU and on CUDA GPUs only: a device is ``auto``,
``cpu``, ``cuda`` or ``cuda:N``. Other names torch knows (``mps``, ``xpu``,
``meta``, ...) are refused here, once, before any work. The params schema
(``cvae.params.schema``, which does not import torch) accepts the same names
with its own copy of :data:`DEVICE_RE`; a test keeps the two equal.
"""

from __future__ import annotations

import re

import torch

from cvae.core.errors import CVAEError, UsageError

# Every device name accepted (cuda:N without leading zeros, as torch reads it).
DEVICE_RE = re.compile(r"auto|cpu|cuda(?::(?:0|[1-9][0-9]*))?")
DEVICES = "auto, cpu or cuda"  # what a message asks for


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` -> cuda when available, else cpu; check an explicit choice."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise UsageError(f"device {device!r} unknown: use {DEVICES}") from None
    if not DEVICE_RE.fullmatch(device):
        raise UsageError(f"device {device!r} is not supported: use {DEVICES}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CVAEError(f"device {device!r} but no CUDA GPU here: use auto or cpu")
    count = torch.cuda.device_count() if dev.type == "cuda" else 0
    if dev.index is not None and dev.index >= count:
        which = "cuda" if count == 1 else f"cuda:0 to cuda:{count - 1}"
        raise CVAEError(
            f"device {device!r} but only {count} CUDA GPU{'s' * (count > 1)} "
            f"here: use {which}, or auto"
        )
    return dev
