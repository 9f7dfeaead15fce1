"""Resume state of a training run: weights, optimizer, RNG and history in
one torch file, written atomically and read without running code."""

from __future__ import annotations

import os
import re
from typing import Any

import torch

from cvae.core.errors import CVAEError
from cvae.core.files import atomic_path


def save_state(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Training state (tensors, numbers, strings, dicts) for resuming, atomically."""
    with atomic_path(path, deferred=False) as tmp:  # resumable at once
        torch.save(state, tmp)


def load_state(path: str | os.PathLike) -> dict[str, Any]:
    """Load a training state without executing code (weights_only=True)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure means "do not resume"
        # torch's weights_only refusal is a dozen lines with colour codes: keep
        # one line, naming the global the file wanted to call.
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
        refused = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
        lines = [  # torch's advice to load with weights_only=False is not ours
            line.strip()
            for line in text.splitlines()
            if line.strip() and "weights_only" not in line
        ]
        why = (
            f"it calls {refused.group(1)}, refused without running it"
            if refused
            else (lines[0] if lines else f"damaged: {type(e).__name__}")
        )
        raise CVAEError(
            f"resume checkpoint {path} is unreadable ({why}): delete it"
        ) from e
