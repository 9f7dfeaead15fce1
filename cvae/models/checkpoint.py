"""Self-describing model files: safetensors weights + config in the metadata.

The metadata holds ``arch``, the model ``config`` (JSON) and a free ``info``
JSON (condition type, class names, CLIP model...). Loading never executes code:
safetensors has no pickles, and the training-state files use
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save

from cvae import __version__
from cvae.core.errors import CVAEError
from cvae.core.files import atomic_path
from cvae.models import ConditionalVAE, build_model

FORMAT = "cvae-model-v1"


def save_model(
    path: str | os.PathLike, model: ConditionalVAE, arch: str, info: dict | None = None
) -> None:
    """Write ``model`` and its config to ``path`` (safetensors), atomically."""
    meta = {
        "format": FORMAT,
        "arch": arch,
        "config": json.dumps(dataclasses.asdict(model.config)),
        "info": json.dumps(info or {}),
        "cvae_version": __version__,
    }
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    bad = first_non_finite(state)
    if bad is not None:
        raise CVAEError(
            f"refusing to write {path}: tensor {bad!r} holds NaN or Inf (training "
            "diverged): lower the learning rate or beta and retrain"
        )
    data = canonical_safetensors(save(state, metadata=meta))
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


def first_non_finite(state: dict[str, torch.Tensor]) -> str | None:
    """Name of the first floating tensor holding NaN or Inf, or None."""
    for name, t in state.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return name
    return None


def check_state_dict(
    path: str | os.PathLike, model: torch.nn.Module, state: dict[str, torch.Tensor]
) -> None:
    """The file's tensors are exactly the model's, by name and shape (named)."""
    want = model.state_dict()
    missing = [k for k in want if k not in state]
    extra = [k for k in state if k not in want]
    shape = [k for k in want if k in state and state[k].shape != want[k].shape]
    if missing:
        raise CVAEError(
            f"{path}: tensor {missing[0]!r} missing ({len(missing)} in all): the "
            "weights do not match its config; retrain the model"
        )
    if extra:
        raise CVAEError(
            f"{path}: unexpected tensor {extra[0]!r} ({len(extra)} in all): the "
            "weights do not match its config; retrain the model"
        )
    if shape:
        k = shape[0]
        raise CVAEError(
            f"{path}: tensor {k!r} is {tuple(state[k].shape)}, the config needs "
            f"{tuple(want[k].shape)}: retrain the model"
        )


def canonical_safetensors(data: bytes) -> bytes:
    """The same safetensors file with its JSON header in sorted key order.

    safetensors (0.8) writes the metadata from a Rust HashMap, whose order changes
    from one save to the next, so equal weights gave unequal files (and DVC saw
    a new output). The tensor offsets are relative to the data section, so the
    header can be re-serialised freely; it is padded with spaces to a multiple
    of 8 bytes, as the format asks.
    """
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + data[8 + n :]


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """{"arch", "config": dict, "info": dict} of a model file, checked."""
    path = Path(path)
    if not path.is_file():
        raise CVAEError(f"model file {path} not found: run `dvc repro` to train it")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise CVAEError(
            f"{path} is not a readable safetensors file ({e}): retrain"
        ) from e
    if meta.get("format") != FORMAT:
        raise CVAEError(f"{path} is not a cvae model file (no '{FORMAT}' metadata)")
    try:
        return {
            "arch": meta["arch"],
            "config": json.loads(meta["config"]),
            "info": json.loads(meta.get("info", "{}")),
        }
    except (KeyError, json.JSONDecodeError) as e:
        raise CVAEError(f"{path} has damaged metadata ({e}): retrain the model") from e


# Config keys added after files of an arch were first written, with the value
# that reproduces what those files did (per arch, as in the metadata's ``arch``).
OLDER_FILES = {
    "image": {"logvar_max": None},  # saved before the bound: unbounded
    "gmm": {"temperature": 1.0},  # saved before the knob: the fit itself
    # cvae.evaluation.classifier.ARCH: the single-conv network, no hidden layer
    "fashion-classifier": {"convs_per_block": 1, "hidden": 0},
}


def stored_config(meta: dict[str, Any]) -> dict[str, Any]:
    """The file's config, with the keys a file written before them lacks."""
    return OLDER_FILES.get(meta["arch"], {}) | meta["config"]


def load_model(
    path: str | os.PathLike,
    device: str | torch.device = "cpu",
    *,
    expect_arch: str | tuple[str, ...] | None = None,
) -> tuple[ConditionalVAE, dict[str, Any]]:
    """Rebuild a model from its file alone; returns (model in eval mode, metadata).

    ``expect_arch``: the arch (or archs) the caller can use; any other is refused.
    """
    meta = read_metadata(path)
    if expect_arch is not None:
        allowed = (expect_arch,) if isinstance(expect_arch, str) else expect_arch
        if meta["arch"] not in allowed:
            want = " or ".join(repr(a) for a in allowed)
            raise CVAEError(f"{path} holds a {meta['arch']!r} model, expected {want}")
    try:
        model = build_model(meta["arch"], stored_config(meta))
    except (TypeError, ValueError) as e:
        raise CVAEError(f"{path}: config does not build a model ({e})") from e
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise CVAEError(f"{path}: weights unreadable ({e}): retrain the model") from e
    check_state_dict(path, model, state)
    bad = first_non_finite(state)
    if bad is not None:
        raise CVAEError(f"{path}: tensor {bad!r} holds NaN or Inf: retrain the model")
    model.load_state_dict(state, strict=True)
    return model.to(device).eval(), meta
