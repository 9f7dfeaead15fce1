"""CLIP text and image embeddings (open_clip), stored as parquet.

Shape letters: N texts or images, S sentences, D embedding width (512 for
ViT-B-32).

Long captions are embedded sentence by sentence and averaged: every sentence of
every text is tokenized and encoded in batches, then the raw ``encode_text``
outputs (not L2-normalised) of a text's sentences are averaged. ``normalize``
L2-normalises the final per-text vectors.

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

import contextlib
import json
import os
import pickle
import re
import socket
import sys
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image
from tqdm import tqdm

from cvae.device import resolve_device
from cvae.errors import CVAEError
from cvae.io import atomic_path, file_digest, read_parquet

RANDOM_INIT = ("none", "")  # values of ``pretrained`` meaning random weights
HUB_HOST = ("huggingface.co", 443)
NETWORK_TIMEOUT_S = 3.0
METADATA_KEY = b"cvae.embeddings"
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".npz")


def random_init_warning(setting: str) -> str:
    """What random CLIP weights mean, naming where the user sets real ones."""
    return (
        "CLIP has RANDOM weights (pretrained: none): embeddings are reproducible "
        f"but carry no meaning; point {setting} at a local checkpoint file for "
        "real text conditioning"
    )


RANDOM_INIT_WARNING = random_init_warning("embed.pretrained")

_SENTENCE_END = re.compile(r"(?<=[.!?])(?:\s+|$)")


def split_sentences(text: str) -> list[str]:
    """Split on ``.``, ``!`` or ``?`` followed by whitespace or the end.

    Sentences keep their terminator and are stripped; pieces without any letter
    or digit ("...") are dropped. A text without terminator is one sentence.

    >>> split_sentences("A cow. Two sheep!  Hills?")
    ['A cow.', 'Two sheep!', 'Hills?']
    """
    stripped = text.strip() if isinstance(text, str) else ""
    if not stripped:
        raise CVAEError(
            f"empty caption {text!r}: remove it from the captions file or filter"
        )
    pieces = [p.strip() for p in _SENTENCE_END.split(stripped)]
    sentences = [p for p in pieces if any(ch.isalnum() for ch in p)]
    return sentences or [stripped]


@dataclass
class ClipEncoder:
    """An open_clip model in eval mode with its preprocess and tokenizer."""

    model: torch.nn.Module
    preprocess: Callable[[Image.Image], torch.Tensor]  # PIL -> (3, R, R)
    tokenizer: Callable[[list[str]], torch.Tensor]  # list -> (B, 77) int64
    model_name: str
    pretrained: str
    random_init: bool
    device: torch.device
    seed: int = 0
    sha256: str | None = None  # of the weights file (None: random init)

    @property
    def dim(self) -> int:
        """Embedding width D."""
        out = getattr(getattr(self.model, "visual", None), "output_dim", None)
        if out is None:
            out = int(self._encode_sentences(["a"], batch_size=1).shape[1])
        return int(out)

    def metadata(self) -> dict[str, Any]:
        """What produced the embeddings: stored with them in parquet."""
        return {
            "model": self.model_name,
            "pretrained": self.pretrained,
            "random_init": self.random_init,
            "seed": self.seed,
            "sha256": self.sha256,
        }

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def _encode_sentences(
        self, sentences: list[str], *, batch_size: int, progress: bool = False
    ) -> np.ndarray:
        """Raw ``encode_text`` of S sentences in batches -> float32[S, D]."""
        out: list[np.ndarray] = []
        starts = range(0, len(sentences), batch_size)
        with torch.inference_mode(), self._autocast():
            for i in tqdm(
                starts, desc="text", unit="batch", disable=None if progress else True
            ):
                tokens = self.tokenizer(sentences[i : i + batch_size])  # (B, 77)
                feats = self.model.encode_text(tokens.to(self.device))  # (B, D)
                out.append(feats.float().cpu().numpy())
        if not out:
            return np.zeros((0, self.dim), np.float32)
        return np.concatenate(out).astype(np.float32, copy=False)

    def embed_texts(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 64,
        normalize: bool = False,
        progress: bool = False,
    ) -> np.ndarray:
        """Embed N texts as the mean of their sentences' embeddings -> float32[N, D].

        All S sentences of all texts go through the model in batches of
        ``batch_size``; the per-text mean is taken afterwards.
        """
        if batch_size < 1:
            raise CVAEError(f"batch_size={batch_size} must be >= 1: fix params")
        sentences: list[str] = []
        owner: list[int] = []  # (S,) index of the text each sentence comes from
        for i, text in enumerate(texts):
            parts = split_sentences(text)
            sentences.extend(parts)
            owner.extend([i] * len(parts))
        feats = self._encode_sentences(
            sentences, batch_size=batch_size, progress=progress
        )  # (S, D)
        n = len(texts)
        sums = np.zeros((n, feats.shape[1]), np.float64)  # (N, D)
        np.add.at(sums, np.asarray(owner, dtype=np.int64), feats)
        counts = np.bincount(owner, minlength=n).astype(np.float64)  # (N,)
        means = (sums / np.maximum(counts, 1.0)[:, None]).astype(np.float32)
        return _l2_normalize(means) if normalize else means

    def embed_images(
        self,
        images: Iterable[Image.Image],
        *,
        batch_size: int = 64,
        normalize: bool = False,
        progress: bool = False,
        total: int | None = None,
    ) -> np.ndarray:
        """Embed RGB PIL images with the model's preprocess -> float32[N, D].

        ``images`` may be a lazy iterable (files are then opened batch by batch).
        """
        if batch_size < 1:
            raise CVAEError(f"batch_size={batch_size} must be >= 1: fix params")
        out: list[np.ndarray] = []
        bar = tqdm(
            total=total, desc="image", unit="img", disable=None if progress else True
        )
        with torch.inference_mode(), self._autocast(), bar:
            for batch in _batched(images, batch_size):
                pixels = torch.stack([self.preprocess(im) for im in batch])
                feats = self.model.encode_image(pixels.to(self.device))  # (B, D)
                out.append(feats.float().cpu().numpy())
                bar.update(len(batch))
        vectors = (
            np.concatenate(out).astype(np.float32, copy=False)
            if out
            else np.zeros((0, self.dim), np.float32)
        )
        return _l2_normalize(vectors) if normalize else vectors


def tensor_to_pil(images: torch.Tensor) -> list[Image.Image]:
    """(N, 3, H, W) float in [0, 1] or uint8 -> N RGB PIL images."""
    if images.dtype != torch.uint8:
        images = images.float().clamp(0, 1).mul(255).round().to(torch.uint8)
    arr = images.cpu().permute(0, 2, 3, 1).numpy()  # (N, H, W, 3)
    return [Image.fromarray(a, mode="RGB") for a in arr]


def clip_score(text_vectors: np.ndarray, image_vectors: np.ndarray) -> np.ndarray:
    """Per-pair CLIP score, 100 * max(cos(t_i, v_i), 0) -> float64[N].

    The definition of Hessel et al. (2021) with torchmetrics' scale w = 100:
    text_vectors, image_vectors: (N, D) raw or normalised embeddings, row i of
    one paired with row i of the other.
    """
    t = np.asarray(text_vectors, np.float64)
    v = np.asarray(image_vectors, np.float64)
    if t.shape != v.shape or t.ndim != 2:
        raise CVAEError(
            "clip_score needs two (N, D) arrays of one shape, "
            f"got {t.shape} and {v.shape}"
        )
    t = t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-12)
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    return 100.0 * np.maximum((t * v).sum(axis=1), 0.0)


def _batched(items: Iterable[Any], n: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


def _l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero): float32[N, D]."""
    norms = np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


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


def clip_width(model_name: str) -> int:
    """The embedding width D of an open_clip config (no model is built)."""
    import open_clip

    cfg = open_clip.get_model_config(model_name)
    if cfg is None:
        raise CVAEError(
            f"unknown CLIP model {model_name!r}: set embed.model to one of "
            "open_clip.list_models() (e.g. ViT-B-32)"
        )
    return int(cfg["embed_dim"])


def missing_checkpoint(tag: str, setting: str = "embed.pretrained") -> CVAEError:
    return CVAEError(
        f"CLIP checkpoint {tag} not found: fix {setting} (a local file "
        "path, a hub tag, or none)"
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
            (see the module docstring).
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
    if model_name not in open_clip.list_models():
        raise CVAEError(
            f"unknown CLIP model {model_name!r}: set embed.model to one of "
            "open_clip.list_models() (e.g. ViT-B-32)"
        )
    tag = "none" if pretrained is None else str(pretrained).strip()
    kwargs: dict[str, Any] = {}
    random_init = tag.lower() in RANDOM_INIT
    if random_init:
        weights = None
        print(f"WARNING: {random_init_warning(setting)}", file=sys.stderr)
    elif os.path.isfile(os.path.expanduser(tag)):
        weights = os.path.expanduser(tag)
        if _is_torchscript(weights):
            if "quickgelu" not in model_name.lower():
                raise CVAEError(
                    f"{weights} is a TorchScript (OpenAI) checkpoint trained with "
                    f"QuickGELU: set embed.model to {model_name}-quickgelu"
                )
            kwargs["weights_only"] = False
    elif _looks_like_path(tag):
        raise missing_checkpoint(tag, setting)
    else:
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
            weights = cached
            kwargs.update(
                force_quick_gelu=bool(cfg.get("quick_gelu", False)),
                image_mean=cfg.get("mean"),
                image_std=cfg.get("std"),
                image_interpolation=cfg.get("interpolation"),
                image_resize_mode=cfg.get("resize_mode"),
            )
            if _is_torchscript(cached):  # OpenAI's own .pt from ~/.cache/clip
                kwargs["weights_only"] = False
        elif network_available():
            weights = tag
        else:
            raise CVAEError(
                f"CLIP weights {model_name}/{tag} are not cached and "
                f"{HUB_HOST[0]} is unreachable: download the checkpoint on a "
                f"machine with network and set {setting} to /path/to/file"
            )

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
    """What names the CLIP weights, without loading them: the setting and the
    sha256 of the file it resolves to (a local file, or a hub tag's cached
    file); None for random init or a hub tag not cached here."""
    tag = pretrained.strip()
    digest = None
    if tag.lower() not in RANDOM_INIT:
        path = os.path.expanduser(tag)
        if os.path.isfile(path):
            digest = file_digest(path)
        elif _looks_like_path(tag):
            raise missing_checkpoint(tag)
        else:
            import open_clip

            cfg = open_clip.get_pretrained_cfg(model_name, tag)
            cached = cached_checkpoint(cfg) if cfg else None
            digest = file_digest(cached) if cached else None
    return {"model": model_name, "pretrained": tag, "sha256": digest}


def write_embeddings(
    path: str | os.PathLike,
    ids: Sequence[int] | np.ndarray,
    vectors: np.ndarray,
    *,
    extra_columns: Mapping[str, Sequence[Any] | np.ndarray] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> None:
    """Write ``image_id``, the extra columns, and ``embedding`` to parquet.

    Args:
        ids: (N,) image ids.
        vectors: float32[N, D], stored as a fixed_size_list<float32>[D] column.
        extra_columns: name -> N values, placed between image_id and embedding.
        metadata: JSON-able dict (model, pretrained, random_init, ...) stored in
            the schema metadata under ``cvae.embeddings``; ``dim`` is added.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2:
        raise ValueError(f"vectors must be (N, D), got shape {vectors.shape}")
    n, d = vectors.shape
    ids = np.asarray(ids, dtype=np.int64)
    if ids.shape != (n,):
        raise ValueError(f"ids shape {ids.shape} != ({n},)")
    columns: dict[str, pa.Array] = {"image_id": pa.array(ids, pa.int64())}
    for name, values in (extra_columns or {}).items():
        if name in ("image_id", "embedding"):
            raise ValueError(f"extra column name {name!r} is reserved")
        array = pa.array(values)
        if len(array) != n:
            raise ValueError(f"extra column {name!r} has {len(array)} rows, not {n}")
        columns[name] = array
    flat = pa.array(vectors.reshape(-1), pa.float32())
    columns["embedding"] = pa.FixedSizeListArray.from_arrays(flat, d)
    meta = {**(metadata or {}), "dim": d}
    table = pa.table(columns).replace_schema_metadata(
        {METADATA_KEY: json.dumps(meta, sort_keys=True)}
    )
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_embeddings(
    path: str | os.PathLike,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Read a parquet from ``write_embeddings``.

    Returns:
        ids int64[N], vectors float32[N, D], metadata dict (model, pretrained,
        random_init, dim, ...). Extra columns: read the file with pyarrow.
    """
    table = read_parquet(path, what="embeddings", stage="embed")
    if "embedding" not in table.column_names or "image_id" not in table.column_names:
        raise CVAEError(f"{path} is not an embeddings file: re-run the embed stage")
    raw = (table.schema.metadata or {}).get(METADATA_KEY, b"{}")
    meta = json.loads(raw)
    column = table.column("embedding").combine_chunks()
    d = column.type.list_size
    vectors = column.flatten().to_numpy(zero_copy_only=False).reshape(-1, d)
    ids = table.column("image_id").to_numpy().astype(np.int64, copy=False)
    return ids, vectors.astype(np.float32, copy=False), meta
