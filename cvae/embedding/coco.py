"""Embedding a COCO manifest with CLIP: every caption (the mean of its
sentences) and every original image, into two embeddings stores. Under
torchrun every rank embeds its share of the batches and rank 0 writes: the
same bytes as one process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from cvae.clip.encoder import split_sentences
from cvae.clip.weights import RANDOM_INIT_WARNING, load_clip
from cvae.core.device import resolve_device
from cvae.core.distributed import DistInfo, gather_to_main, rank_device
from cvae.core.errors import CVAEError
from cvae.core.files import write_record
from cvae.data.coco import read_manifest
from cvae.data.embeddings import write_embeddings
from cvae.data.image_files import preprocessed_batches
from cvae.params.schema import EmbedParams


def run_embed(
    manifest: Path,
    images: Path,
    text_out: Path,
    image_out: Path,
    metrics: Path,
    p: EmbedParams,
    info: Path | None = None,
    dist: DistInfo | None = None,
) -> dict[str, Any] | None:
    """Embed every caption (sentence mean) and every image; write both parquets.

    Text parquet: image_id, caption_index, caption, embedding[D], one row per
    caption. Image parquet: image_id, embedding[D], one row per readable image.
    Under torchrun (``dist``) every rank embeds its share of the batches and
    rank 0 writes (the same bytes as one process); the others return None.
    """
    dist = dist or DistInfo()
    if not images.is_dir():
        raise CVAEError(f"images folder {images} not found: pass --images")
    table = read_manifest(manifest)
    rows = sorted(
        table.select(["image_id", "file_name", "captions"]).to_pylist(),
        key=lambda r: r["image_id"],
    )
    device = rank_device(resolve_device(p.device), dist)
    encoder = load_clip(p.model, p.pretrained, str(device), seed=p.seed)
    normalize, batch_size = p.normalize, p.batch_size

    # Text: one row per caption; all sentences batched together inside.
    cap_ids = [r["image_id"] for r in rows for _ in r["captions"]]
    cap_index = [i for r in rows for i in range(len(r["captions"]))]
    captions = [c for r in rows for c in r["captions"]]
    n_sentences = sum(len(split_sentences(c)) for c in captions)
    text_vecs = encoder.embed_texts(
        captions, batch_size=batch_size, normalize=normalize, progress=True, dist=dist
    )  # (n_captions, D) on rank 0

    # Images: the original files, decoded and preprocessed in worker processes
    # while CLIP runs; unreadable files are skipped (and counted).
    done = []
    batches = preprocessed_batches(
        [images / r["file_name"] for r in rows],
        encoder.preprocess,
        batch_size=batch_size,
        num_workers=p.num_workers,
        dist=dist,
    )
    share = -(-len(rows) // dist.world_size)  # about this rank's images
    hide = None if dist.is_main else True  # None: hidden off a terminal
    with tqdm(total=share, desc="image", unit="img", disable=hide) as bar:
        for ok, batch in batches:
            if batch is not None:
                done.append((ok, encoder.embed_pixels([batch], normalize=normalize)))
            bar.update(len(ok))
    parts = gather_to_main(done, dist)
    if parts is None:
        return None
    pieces = sorted((piece for part in parts for piece in part), key=lambda x: x[0])
    read = [k for ok, _ in pieces for k in ok]  # row positions read, in order
    image_vecs = (
        np.concatenate([vecs for _, vecs in pieces])
        if pieces
        else np.zeros((0, text_vecs.shape[1]), np.float32)
    )  # (n_images, D)
    ok_ids = [rows[k]["image_id"] for k in read]
    skipped = sorted({r["image_id"] for r in rows} - set(ok_ids))
    if rows and not ok_ids:
        raise CVAEError(
            f"none of the {len(rows)} manifest images could be read from {images} "
            "(missing, empty or not images): check --images (coco_data.images)"
        )

    meta = {**encoder.metadata(), "normalize": normalize}
    write_embeddings(
        text_out,
        cap_ids,
        text_vecs,
        extra_columns={"caption_index": cap_index, "caption": captions},
        metadata={**meta, "kind": "text", "reduction": "sentence_mean"},
    )
    write_embeddings(image_out, ok_ids, image_vecs, metadata={**meta, "kind": "image"})
    stats: dict[str, Any] = {
        "n_captions": len(captions),
        "n_sentences": n_sentences,
        "n_images": len(ok_ids),
        "n_images_skipped": len(skipped),
        "skipped_ids": skipped,
        "dim": int(text_vecs.shape[1]),
        "model": encoder.model_name,
        "pretrained": encoder.pretrained,
        "random_init": encoder.random_init,
        "normalize": normalize,
        "device": str(encoder.device),
    }
    if encoder.random_init:
        stats["WARNING"] = RANDOM_INIT_WARNING
    write_record(metrics, info, stats)
    return stats
