"""Prompt -> images with a trained model file (label or CLIP conditioned)."""

from __future__ import annotations

import os
from typing import Any

import torch

from cvae.checkpoint import load_model
from cvae.device import resolve_device
from cvae.errors import CVAEError
from cvae.io import check_writable
from cvae.sampling import generate, image_format, save_grid
from cvae.text import CLASS_NAMES, prompt_to_label


def prompt_condition(
    meta: dict[str, Any],
    prompt: str,
    *,
    device: torch.device,
    clip_checkpoint: str | None = None,
) -> tuple[torch.Tensor, str, list[str]]:
    """(condition tensor, description, warnings) of ``prompt`` for this model."""
    info = meta["info"]
    kind = info.get("condition")
    if kind == "label":
        label = prompt_to_label(prompt)
        classes = info.get("classes", CLASS_NAMES)
        return torch.tensor(label), f"class {label} ({classes[label]})", []
    if kind == "clip":
        from cvae.clip import load_clip

        clip = info["clip"]
        pretrained = clip_checkpoint or clip["pretrained"]
        enc = load_clip(
            clip["model"], pretrained, device=str(device), seed=clip.get("seed", 0)
        )
        trained = clip.get("sha256")  # of the weights the embeddings came from
        warnings = []
        if trained and enc.sha256 is None and not enc.random_init:
            warnings.append(  # downloaded on the fly: no file to hash
                f"cannot check the CLIP weights {pretrained!r} against the ones the "
                f"model was trained with (sha256 {trained[:12]}): no local file"
            )
        elif trained and enc.sha256 != trained:
            got = f"sha256 {enc.sha256[:12]}" if enc.sha256 else "random weights"
            raise CVAEError(
                f"CLIP weights {pretrained!r} ({got}) are not the ones this model "
                f"was trained with (sha256 {trained[:12]}): pass that checkpoint "
                "with --clip-checkpoint"
            )
        want = int(meta["config"]["cond_dim"])
        if enc.dim != want:
            raise CVAEError(
                f"CLIP {clip['model']} with weights {pretrained!r} gives {enc.dim}-d "
                f"vectors but the model takes {want}-d conditions: pass the CLIP "
                "weights it was trained with (--clip-checkpoint)"
            )
        vec = enc.embed_texts(
            [prompt], batch_size=32, normalize=clip.get("normalize", False)
        )
        if enc.random_init:
            warnings.append(
                "CLIP is randomly initialised: the prompt embedding carries "
                "no meaning; pass --clip-checkpoint /path/to/ViT-B-32.pt"
            )
        return torch.from_numpy(vec[0]), "CLIP text embedding", warnings
    raise CVAEError(f"model has unknown condition type {kind!r}: retrain it")


def generate_from_prompt(
    model_path: str | os.PathLike,
    prompt: str,
    *,
    n: int,
    seed: int,
    out: str | os.PathLike,
    nrow: int = 8,
    device: str = "auto",
    clip_checkpoint: str | None = None,
) -> dict[str, Any]:
    """Write a grid of ``n`` images for ``prompt``; returns what was conditioned on."""
    if n < 1:
        raise CVAEError(f"n must be >= 1, got {n}")
    image_format(out)  # an unknown extension fails before any work
    check_writable(out)
    dev = resolve_device(device)
    model, meta = load_model(model_path, dev)
    cond, desc, warnings = prompt_condition(
        meta, prompt, device=dev, clip_checkpoint=clip_checkpoint
    )
    images = generate(model, cond, n, seed=seed)
    save_grid(images, out, nrow=nrow)
    return {"condition": desc, "warnings": warnings}
