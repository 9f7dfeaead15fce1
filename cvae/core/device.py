"""Device choice shared by training, evaluation, CLIP and the CLI."""

from __future__ import annotations

import torch

from cvae.core.errors import CVAEError, UsageError


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` -> cuda when available, else cpu; check an explicit choice."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise UsageError(f"device {device!r} unknown: use auto, cpu or cuda") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CVAEError(f"device {device!r} but no CUDA GPU here: use auto or cpu")
    return dev
