"""CLIP text and image embeddings (open_clip); the vectors are stored by
:mod:`cvae.data.embeddings`.

Shape letters: N texts or images, S sentences, D embedding width (512 for
ViT-B-32).

Long captions are embedded sentence by sentence and averaged: every sentence of
every text is tokenized and encoded in batches, then the raw ``encode_text``
outputs (not L2-normalised) of a text's sentences are averaged. ``normalize``
L2-normalises the final per-text vectors. Which weights, and how they are
loaded offline: :mod:`cvae.clip.weights`.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from cvae.clip.last_block import encode_image_pooled, image_ok
from cvae.clip.text import encode_text_trimmed, length_order, trimmable
from cvae.core.distributed import DistInfo, batches_of_rank, gather_to_main
from cvae.core.errors import CVAEError

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
        self,
        sentences: list[str],
        *,
        batch_size: int,
        progress: bool = False,
        dist: DistInfo | None = None,
    ) -> np.ndarray | None:
        """Raw ``encode_text`` of S sentences in batches -> float32[S, D].

        Batches hold sentences of similar length and are cut after their
        longest sentence (``cvae.clip.text``: the same vectors, without the
        work on padding); rows come back in the order given. Under torchrun
        (``dist``) each rank encodes its whole batches and rank 0 gets all
        rows (the others get None): the same bytes as one process.
        """
        dist = dist or DistInfo()
        if not sentences:
            return np.zeros((0, self.dim), np.float32) if dist.is_main else None
        trim = trimmable(self.model)
        order = (
            length_order(sentences, self.tokenizer)
            if trim
            else torch.arange(len(sentences))
        )
        done: list[tuple[np.ndarray, np.ndarray]] = []  # (rows, features)
        mine = batches_of_rank(len(sentences), batch_size, dist)
        with torch.inference_mode(), self._autocast():
            for cut in tqdm(
                mine, desc="text", unit="batch", disable=None if progress else True
            ):
                rows = order[cut.start : cut.stop]
                batch = self.tokenizer([sentences[i] for i in rows]).to(self.device)
                feats = (
                    encode_text_trimmed(self.model, batch)
                    if trim
                    else self.model.encode_text(batch)
                )  # (B, D)
                done.append((rows.numpy(), feats.float().cpu().numpy()))
        parts = gather_to_main(done, dist)
        if parts is None:
            return None
        del done  # the pieces live in ``parts`` only, and go as they are copied
        out = np.zeros((len(sentences), parts[0][0][1].shape[1]), np.float32)
        for part in parts:
            while part:
                rows, feats = part.pop()
                out[rows] = feats
        return out

    def embed_texts(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 64,
        normalize: bool = False,
        progress: bool = False,
        dist: DistInfo | None = None,
    ) -> np.ndarray | None:
        """Embed N texts as the mean of their sentences' embeddings -> float32[N, D].

        All S sentences of all texts go through the model in batches of
        ``batch_size``; the per-text mean is taken afterwards. Under torchrun
        (``dist``) the batches are shared by the ranks; rank 0 returns the
        vectors, the others None.
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
            sentences, batch_size=batch_size, progress=progress, dist=dist
        )  # (S, D)
        if feats is None:
            return None
        means = sentence_means(feats, np.asarray(owner, dtype=np.int64), len(texts))
        del feats
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
        pixels = (
            torch.stack([self.preprocess(im) for im in batch])
            for batch in _batched(images, batch_size)
        )
        return self.embed_pixels(
            pixels, normalize=normalize, progress=progress, total=total
        )

    def embed_pixels(
        self,
        batches: Iterable[torch.Tensor],
        *,
        normalize: bool = False,
        progress: bool = False,
        total: int | None = None,
    ) -> np.ndarray:
        """Embed batches of preprocessed images (B, 3, R, R) -> float32[N, D]
        (``cvae.data.image_files`` decodes and preprocesses files in workers).

        A ViT's last block runs at the class token only
        (``cvae.clip.last_block``): the same vectors to float rounding.
        """
        encode = (
            partial(encode_image_pooled, self.model)
            if image_ok(self.model)
            else self.model.encode_image
        )
        out: list[np.ndarray] = []
        bar = tqdm(
            total=total, desc="image", unit="img", disable=None if progress else True
        )
        with torch.inference_mode(), self._autocast(), bar:
            for pixels in batches:
                feats = encode(pixels.to(self.device))  # (B, D)
                out.append(feats.float().cpu().numpy())
                bar.update(len(pixels))
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


# Texts whose float64 sums are formed at once (bounds the float64 working set).
MEAN_CHUNK = 4096


def sentence_means(feats: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    """Per-text mean of sentence features -> float32[N, D].

    feats: (S, D) float32; owner: (S,) non-decreasing text index of each
    sentence (a text's sentences are contiguous). Sums are float64, added in
    sentence order, a chunk of texts at a time: only the float32 result has
    the size of the whole set. A text without sentences gets zeros.
    """
    out = np.zeros((n, feats.shape[1]), np.float32)
    bounds = np.searchsorted(owner, np.arange(n + 1))  # (N+1,) sentence ranges
    for t0 in range(0, n, MEAN_CHUNK):
        t1 = min(t0 + MEAN_CHUNK, n)
        s0, s1 = bounds[t0], bounds[t1]
        sums = np.zeros((t1 - t0, feats.shape[1]), np.float64)
        np.add.at(sums, owner[s0:s1] - t0, feats[s0:s1])
        counts = np.diff(bounds[t0 : t1 + 1]).astype(np.float64)  # (T,)
        out[t0:t1] = sums / np.maximum(counts, 1.0)[:, None]
    return out


def _l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero): float32[N, D]."""
    norms = np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)
