"""Prompt -> images with a trained model file (label or CLIP conditioned).

Used by the ``cvae`` command: its messages name the command's options
(``--clip-checkpoint``), not params.yaml keys.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from cvae.core.device import resolve_device
from cvae.core.errors import CVAEError, UsageError
from cvae.core.files import check_writable
from cvae.data.prompts import CLASS_NAMES, find_classes, known_words, prompt_to_label
from cvae.evaluation.sampling import generate, image_format, save_grid
from cvae.models.checkpoint import load_model
from cvae.models.gmm import FittedPrior
from cvae.params.schema import MAX_TEMPERATURE

CLIP_OPTION = "--clip-checkpoint"  # the CLI's name for embed.pretrained
MAX_PROMPT = 1_000  # characters; a longer prompt is refused (every model kind)
SHOWN_PROMPT = 60  # characters of a prompt quoted in a message or a grid's title


def shown(prompt: str) -> str:
    """``prompt`` quoted, cut to SHOWN_PROMPT characters with an ellipsis."""
    cut = prompt if len(prompt) <= SHOWN_PROMPT else prompt[: SHOWN_PROMPT - 1] + "…"
    return repr(cut)


def check_prompt(prompt: str) -> None:
    """A prompt of at most MAX_PROMPT characters, or a one-line usage error."""
    if len(prompt) > MAX_PROMPT:
        raise UsageError(
            f"the prompt is {len(prompt):,} characters long: shorten it to at "
            f"most {MAX_PROMPT:,}"
        )


def conditioned_on(meta: dict[str, Any]) -> str:
    """What a model file is conditioned on, in words (for ``cvae info``/generate)."""
    info = meta["info"]
    kind = info.get("condition")
    if kind == "label":
        classes = info.get("classes", CLASS_NAMES)
        return (
            f"a Fashion-MNIST class label ({len(classes)} classes, "
            f"{meta['config']['conditioning']}); the prompt is matched to a class"
        )
    if kind == "clip":
        clip = info["clip"]
        weights = "RANDOM weights" if clip.get("random_init") else clip["pretrained"]
        on = info.get("condition_on", "text")
        trained = (
            "CLIP text embeddings of its captions (sentence-averaged)"
            if on == "text"
            else "CLIP image embeddings of its images"
        )
        return (
            f"{trained}, {meta['config']['cond_dim']}-d, CLIP {clip['model']} "
            f"({weights}), {meta['config']['conditioning']}; the prompt's CLIP text "
            "embedding is the condition"
            + (" (CLIP's shared text-image space)" if on == "image" else "")
        )
    return f"unknown condition type {kind!r}"


def prompt_condition(
    meta: dict[str, Any],
    prompt: str,
    *,
    device: torch.device,
    clip_checkpoint: str | None,
    clip_loader: Callable[..., Any] | None = None,
) -> tuple[torch.Tensor, str, list[str]]:
    """(condition tensor, description, warnings) of ``prompt`` for this model.

    ``clip_loader``: what builds the CLIP encoder (``load_clip``'s signature;
    the demo passes a cached one so that CLIP is loaded once per server)."""
    check_prompt(prompt)
    info = meta["info"]
    kind = info.get("condition")
    if kind == "label":
        if prompt.strip() and not find_classes(prompt):
            raise UsageError(
                f"no Fashion-MNIST class in {shown(prompt)} (prompts are matched "
                f"in English): use one of {', '.join(known_words())}"
            )
        label = prompt_to_label(prompt)
        classes = info.get("classes", CLASS_NAMES)
        return torch.tensor(label), f"class {label} ({classes[label]})", []
    if kind == "clip":
        from cvae.clip.weights import load_clip

        if not prompt.strip():  # before CLIP is built: no warning, one line
            raise UsageError(
                'the prompt is empty: give a caption, e.g. "a cow in a field"'
            )
        clip = info["clip"]
        pretrained = clip_checkpoint or clip["pretrained"]
        enc = (clip_loader or load_clip)(
            clip["model"],
            pretrained,
            device=str(device),
            seed=clip.get("seed", 0),
            setting=CLIP_OPTION,
        )
        trained = clip.get("sha256")  # of the weights the embeddings came from
        if bool(clip.get("random_init")) != enc.random_init:
            was = "random CLIP weights" if clip.get("random_init") else "real weights"
            now = "random weights" if enc.random_init else f"weights {pretrained!r}"
            raise CVAEError(
                f"this model was trained on embeddings from {was}, but the prompt "
                f"would be embedded with {now}: its conditions would mean nothing "
                f"to it; pass the CLIP weights it was trained with ({CLIP_OPTION})"
            )
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
                f"with {CLIP_OPTION}"
            )
        want = int(meta["config"]["cond_dim"])
        if enc.dim != want:
            raise CVAEError(
                f"CLIP {clip['model']} with weights {pretrained!r} gives {enc.dim}-d "
                f"vectors but the model takes {want}-d conditions: pass the CLIP "
                f"weights it was trained with ({CLIP_OPTION})"
            )
        vec = enc.embed_texts(
            [prompt], batch_size=32, normalize=clip.get("normalize", False)
        )
        on = info.get("condition_on", "text")
        desc = "the prompt's CLIP text embedding" + (
            " (model trained on CLIP image embeddings)" if on == "image" else ""
        )
        return torch.from_numpy(vec[0]), desc, warnings
    raise CVAEError(f"model has unknown condition type {kind!r}: retrain it")


def generate_from_prompt(
    model_path: str | os.PathLike,
    prompt: str,
    *,
    n: int,
    seed: int,
    out: str | os.PathLike,
    nrow: int,
    device: str,
    clip_checkpoint: str | None,
    scale: int,
    labels: bool,
    temperature: float | None,
) -> dict[str, Any]:
    """Write a grid of ``n`` images for ``prompt``; returns what was conditioned on
    and how it was sampled (seed, temperature).

    ``scale``: nearest-neighbour upscaling of the grid; ``labels``: a title band
    naming the prompt, the condition and the seed; ``temperature``: the fitted
    prior's sampling spread in place of the model file's (None: the file's).
    """
    if n < 1:
        raise UsageError(f"n must be >= 1, got {n}")
    if scale < 1:
        raise UsageError(f"scale must be >= 1, got {scale}")
    if temperature is not None and not 0 < temperature <= MAX_TEMPERATURE:
        raise UsageError(  # before any work; NaN fails the comparison too
            f"--temperature must be in (0, {MAX_TEMPERATURE:g}], got {temperature}: "
            "pick one there, e.g. 0.6 (1 samples the fitted prior as it is)"
        )
    check_prompt(prompt)
    if Path(out).is_dir():
        raise UsageError(
            f"{out} is a folder: name a file in it, e.g. -o {Path(out, 'grid.png')}"
        )
    image_format(out)  # an unknown extension fails before any work
    check_writable(out)
    dev = resolve_device(device)
    model, meta = load_model(model_path, dev)
    if temperature is not None:
        set_temperature(model, meta, temperature)
    cond, desc, warnings = prompt_condition(
        meta, prompt, device=dev, clip_checkpoint=clip_checkpoint
    )
    images = generate(model, cond, n, seed=seed)
    sampled = f"seed {seed}" + (
        "" if temperature is None else f", temperature {temperature:g}"
    )
    title = f"{shown(prompt)} -> {desc}, {sampled}" if labels else None
    try:
        save_grid(images, out, nrow=nrow, scale=scale, title=title)
    except OSError as e:  # the temporary file is gone: nothing half-written
        raise cannot_write(out, e) from None
    return {"condition": desc, "sampled": sampled, "warnings": warnings}


def set_temperature(model: torch.nn.Module, meta: dict[str, Any], t: float) -> None:
    """Sample ``model``'s fitted prior at temperature ``t``, or a one-line usage
    error for a model that samples z ~ N(0, I)."""
    if not isinstance(model, FittedPrior):
        raise UsageError(
            f"--temperature applies to models with a fitted prior (gmm, vaegan); "
            f"this {meta['arch']} model samples z ~ N(0, I): leave it out, or pass "
            "-m fashion-vaegan or -m fashion-gmm"
        )
    model.set_temperature(t)


def cannot_write(out: str | os.PathLike, e: OSError) -> CVAEError:
    """The one line for an output that could not be written, with its fix."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = "free some space, or pick another path with -o"
    elif e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = "pick another path with -o, or fix the folder's permissions"
    else:
        fix = "pick another path with -o"
    return CVAEError(f"cannot write {out} ({e.strerror or type(e).__name__}): {fix}")
