"""Which CLIP weights, loaded offline first: random init, a local file, a hub tag.

Weights (``pretrained``):

- ``"none"``: random initialisation, seeded, reproducible, and meaningless as
  semantics (a loud warning goes to stderr; the embed stage records it).
- a local file: loaded by open_clip. OpenAI's TorchScript checkpoints (e.g.
  ``ViT-B-32.pt``) were trained with QuickGELU: use ``model: ViT-B-32-quickgelu``
  with them (they are loaded with ``weights_only=False``, as TorchScript needs).
- an open_clip hub tag (``"openai"``, ``"laion2b_s34b_b79k"``): used from the
  Hugging Face cache when present; otherwise the network is probed first (3 s)
  so that an offline machine fails at once with the fix instead of retrying.
"""

from __future__ import annotations

import os
import pickle
import socket
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from cvae.clip.encoder import ClipEncoder
from cvae.core.device import resolve_device
from cvae.core.errors import CVAEError
from cvae.core.files import file_digest

RANDOM_INIT = ("none", "")  # values of ``pretrained`` meaning random weights
HUB_HOST = ("huggingface.co", 443)
NETWORK_TIMEOUT_S = 3.0
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".npz")


def random_init_warning(setting: str) -> str:
    """What random CLIP weights mean, naming where the user sets real ones."""
    return (
        "CLIP has RANDOM weights (pretrained: none): embeddings are reproducible "
        f"but carry no meaning; point {setting} at a local checkpoint file for "
        "real text conditioning"
    )


RANDOM_INIT_WARNING = random_init_warning("embed.pretrained")


def network_available(
    host: tuple[str, int] = HUB_HOST, timeout: float = NETWORK_TIMEOUT_S
) -> bool:
    """True when a TCP connection to the Hugging Face hub opens within timeout."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    try:
        with socket.create_connection(host, timeout=timeout):
            return True
    except OSError:
        return False


def cached_checkpoint(pretrained_cfg: Mapping[str, Any]) -> str | None:
    """Local path of a hub tag's weights if already downloaded, else None."""
    if "file" in pretrained_cfg:
        return str(pretrained_cfg["file"])
    hub = pretrained_cfg.get("hf_hub", "")
    if hub:
        from huggingface_hub import try_to_load_from_cache

        # "org/repo/file.bin", or "org/repo/" for open_clip's default file name
        repo_id, filename = os.path.split(hub)
        filename = filename or "open_clip_pytorch_model.bin"
        candidates = [filename]
        if filename == "open_clip_pytorch_model.bin":
            candidates.insert(0, "open_clip_model.safetensors")
        elif filename.endswith((".bin", ".pth")):
            candidates.insert(0, filename[:-4] + ".safetensors")
        for name in candidates:
            found = try_to_load_from_cache(repo_id, name)
            if isinstance(found, str) and os.path.isfile(found):
                return found
    url = pretrained_cfg.get("url", "")
    if url:
        target = Path("~/.cache/clip").expanduser() / os.path.basename(url)
        if target.is_file():
            return str(target)
    return None


def _is_torchscript(path: str) -> bool:
    """TorchScript archives (OpenAI's CLIP .pt files) are zips with code/."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any("/code/" in n or n.endswith("/constants.pkl") for n in z.namelist())


def _looks_like_path(value: str) -> bool:
    return (
        os.sep in value
        or value.startswith((".", "~"))
        or value.lower().endswith(CHECKPOINT_SUFFIXES)
    )


def missing_checkpoint(tag: str, setting: str = "embed.pretrained") -> CVAEError:
    return CVAEError(
        f"CLIP checkpoint {tag} not found: fix {setting} (a local file "
        "path, a hub tag, or none)"
    )


def resolve_weights(
    model_name: str, pretrained: str | None, *, setting: str = "embed.pretrained"
) -> tuple[str | None, dict[str, Any]]:
    """Where the CLIP weights ``pretrained`` names come from, checked without
    loading them: (None for random init | a local file | a hub tag to download,
    the keyword arguments open_clip needs for it).

    Refuses, with the fix, an unknown model name, a missing file, a TorchScript
    file for a non-QuickGELU model, a tag the model does not have, and a hub tag
    that is neither cached nor reachable (the network is probed for 3 s).
    """
    import open_clip  # heavy import, only when a model is named

    if model_name not in open_clip.list_models():
        raise CVAEError(
            f"unknown CLIP model {model_name!r}: set embed.model to one of "
            "open_clip.list_models() (e.g. ViT-B-32)"
        )
    tag = "none" if pretrained is None else str(pretrained).strip()
    kwargs: dict[str, Any] = {}
    if tag.lower() in RANDOM_INIT:
        return None, kwargs
    if os.path.isfile(os.path.expanduser(tag)):
        weights = os.path.expanduser(tag)
        if _is_torchscript(weights):
            if "quickgelu" not in model_name.lower():
                raise CVAEError(
                    f"{weights} is a TorchScript (OpenAI) checkpoint trained with "
                    f"QuickGELU: set embed.model to {model_name}-quickgelu"
                )
            kwargs["weights_only"] = False
        return weights, kwargs
    if _looks_like_path(tag):
        raise missing_checkpoint(tag, setting)
    cfg = open_clip.get_pretrained_cfg(model_name, tag)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(model_name)
        raise CVAEError(
            f"{tag!r} is neither a file nor a pretrained tag of {model_name}: "
            f"set {setting} to a local file, none, or one of {tags}"
        )
    cached = cached_checkpoint(cfg)
    if cached is not None:
        # Load the cached file directly: no hub round-trip, works offline.
        kwargs.update(
            force_quick_gelu=bool(cfg.get("quick_gelu", False)),
            image_mean=cfg.get("mean"),
            image_std=cfg.get("std"),
            image_interpolation=cfg.get("interpolation"),
            image_resize_mode=cfg.get("resize_mode"),
        )
        if _is_torchscript(cached):  # OpenAI's own .pt from ~/.cache/clip
            kwargs["weights_only"] = False
        return cached, kwargs
    if network_available():
        return tag, kwargs
    raise CVAEError(
        f"CLIP weights {model_name}/{tag} are not cached and "
        f"{HUB_HOST[0]} is unreachable: download the checkpoint on a "
        f"machine with network and set {setting} to /path/to/file"
    )


def load_clip(
    model_name: str = "ViT-B-32",
    pretrained: str | None = "none",
    device: str = "cpu",
    *,
    seed: int = 0,
    setting: str = "embed.pretrained",
) -> ClipEncoder:
    """Build an open_clip model, its preprocess and tokenizer, in eval mode.

    Args:
        model_name: an open_clip built-in config (``open_clip.list_models()``).
        pretrained: "none" (random init), a local checkpoint path, or a hub tag
            (see the module docstring and :func:`resolve_weights`).
        device: "cpu", "cuda", "cuda:1" or "auto".
        seed: torch seed for random initialisation (the caller's RNG state is
            left untouched). Weights are built on the CPU, then moved, so a seed
            gives the same weights on every device.
        setting: how the user names ``pretrained`` where they can fix it
            (``embed.pretrained`` in params.yaml, ``--clip-checkpoint`` in the CLI);
            error messages and the random-weights warning name it.
    """
    import open_clip  # heavy import, only when a model is wanted

    dev = resolve_device(device)
    tag = "none" if pretrained is None else str(pretrained).strip()
    weights, kwargs = resolve_weights(model_name, tag, setting=setting)
    random_init = weights is None
    if random_init:
        print(f"WARNING: {random_init_warning(setting)}", file=sys.stderr)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                model_name, pretrained=weights, device="cpu", **kwargs
            )
        except (
            AssertionError,  # open_clip asserts on mismatched shapes
            KeyError,
            OSError,
            RuntimeError,
            ValueError,
            pickle.UnpicklingError,  # weights_only refused the file
        ) as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise CVAEError(
                f"cannot load CLIP {model_name} with pretrained={tag!r} ({msg}): "
                "check that embed.model matches the checkpoint"
            ) from None
    model = model.to(dev).eval().requires_grad_(False)
    tokenizer = open_clip.get_tokenizer(model_name)
    return ClipEncoder(
        model=model,
        preprocess=preprocess,
        tokenizer=tokenizer,
        model_name=model_name,
        pretrained=tag,
        random_init=random_init,
        device=dev,
        seed=seed,
        sha256=file_digest(weights) if weights and os.path.isfile(weights) else None,
    )


def checkpoint_identity(model_name: str, pretrained: str) -> dict[str, Any]:
    """What names the CLIP weights, checked as :func:`load_clip` checks them but
    without loading: the setting and the sha256 of the file it resolves to (a
    local file, or a hub tag's cached file); None for random init or a hub tag
    that will be downloaded (the hub is reachable)."""
    tag = pretrained.strip()
    weights, _ = resolve_weights(model_name, tag)
    digest = file_digest(weights) if weights and os.path.isfile(weights) else None
    return {"model": model_name, "pretrained": tag, "sha256": digest}
