"""Write the manifest's images as WebDataset shards, from one process or many.

Shard k holds the readable images among manifest rows ``k*S .. (k+1)*S - 1``
(rows in image_id order, ``S = shard_size``); an unreadable image is skipped and
counted, never moved into another shard, and a shard none of whose images can be
read is not written. So every shard's content is fixed by the manifest alone,
and under torchrun rank r of W writes shards r, r + W, ... into one shared
temporary folder: the bytes are the same for any number of ranks (and of
decoding workers per rank). Rank 0 gathers the counts and swaps the folder in.
Multi-node jobs need the output folder on a shared filesystem.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import webdataset as wds
from tqdm import tqdm

from cvae.core.distributed import DistInfo, cpus_per_rank
from cvae.core.errors import CVAEError
from cvae.core.files import atomic_dir
from cvae.data.shards import (
    IMAGE_FORMATS,
    SHARD_PATTERN,
    TAR_MODE,
    TAR_MTIME,
    TAR_USER,
    prepared_images,
    sample_key,
)

COLUMNS = ["image_id", "file_name", "split", "subsets", "captions"]


def write_shards(
    manifest: pa.Table,
    images_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    size: int,
    shard_size: int,
    image_format: str = "png",
    progress: bool = False,
    workers: int = 1,
    dist: DistInfo | None = None,
) -> dict[str, Any]:
    """Write the manifest's images as size x size WebDataset shards in out_dir.

    The folder is built under a temporary name and swapped in at the end, so a
    crash never leaves half a shard set. Unreadable images are skipped; when no
    image at all can be read, CVAEError is raised and out_dir is not touched.

    Args:
        manifest: table with image_id, file_name, split, subsets, captions (N rows).
        images_dir: folder holding the ``file_name`` files.
        out_dir: shard folder, replaced as a whole.
        size: output side in pixels.
        shard_size: manifest rows per shard (see the module docstring).
        image_format: "png" (lossless) or "jpg" (quality 95).
        workers: processes per rank that decode and resize (0: the node's CPUs
            shared by its torchrun ranks, at least one each).
        dist: this process's place in a torchrun job (None: alone).

    Returns (the same on every rank):
        ``{"written", "skipped_corrupt", "skipped_corrupt_ids",
        "skipped_missing", "skipped_missing_ids", "shards", "size",
        "image_format"}`` where ``shards`` lists the shard file names.
    """
    dist = dist or DistInfo()
    if image_format not in IMAGE_FORMATS:
        raise CVAEError(
            f"image_format={image_format!r} unknown: use one of {IMAGE_FORMATS}"
        )
    if size < 1 or shard_size < 1:
        raise CVAEError(f"size={size}, shard_size={shard_size} must be >= 1")
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise CVAEError(f"images folder {images_dir} not found: pass --images")
    for col in COLUMNS:
        if col not in manifest.column_names:
            raise CVAEError(f"manifest lacks column '{col}': re-run the filter stage")
    if workers < 0:
        raise CVAEError(f"workers={workers} must be >= 0 (0: one per CPU)")
    workers = workers or cpus_per_rank()  # 0: the node's CPUs over its ranks

    rows = sorted(manifest.select(COLUMNS).to_pylist(), key=lambda r: r["image_id"])
    chunks = [rows[i : i + shard_size] for i in range(0, len(rows), shard_size)]
    mine = list(range(dist.rank, len(chunks), dist.world_size))
    with _shared_folder(out_dir, dist) as tmp:
        local = _write_chunks(
            [(k, chunks[k]) for k in mine],
            images_dir,
            tmp,
            size=size,
            image_format=image_format,
            workers=workers,
            progress=progress and dist.is_main,
        )
        stats = _merged(_gather(local, dist))  # every rank has written by now
        if stats["written"] == 0:  # raised inside: out_dir is not swapped
            raise CVAEError(
                f"none of the {len(rows)} manifest images could be read from "
                f"{images_dir} ({stats['skipped_corrupt']} corrupt, "
                f"{stats['skipped_missing']} missing): check --images "
                f"(coco_data.images); nothing was written to {out_dir}"
            )
    return stats | {"size": size, "image_format": image_format}


def _write_chunks(
    chunks: list[tuple[int, list[dict[str, Any]]]],
    images_dir: Path,
    folder: Path,
    *,
    size: int,
    image_format: str,
    workers: int,
    progress: bool,
) -> dict[str, Any]:
    """Write shard k of each (k, rows); the counts of what was written."""
    jobs = [
        (str(images_dir / r["file_name"]), image_format, size)
        for _, rows in chunks
        for r in rows
    ]
    results = iter(prepared_images(jobs, workers))
    out: dict[str, Any] = {"written": 0, "corrupt": [], "missing": [], "shards": []}
    bar = tqdm(
        total=len(jobs),
        desc="shard",
        unit="img",
        disable=None if progress else True,  # hidden off a terminal
    )
    with bar:
        for k, rows in chunks:
            name = SHARD_PATTERN % k
            writer = None
            try:
                for row in rows:
                    status, data = next(results)
                    bar.update(1)
                    image_id = int(row["image_id"])
                    if status != "ok":
                        out["missing" if status == "missing" else "corrupt"].append(
                            image_id
                        )
                        continue
                    if writer is None:
                        writer = wds.TarWriter(
                            str(folder / name),
                            encoder=False,
                            mtime=TAR_MTIME,
                            user=TAR_USER,
                            group=TAR_USER,
                            mode=TAR_MODE,
                        )
                    writer.write(_sample(row, image_id, image_format, data))
                    out["written"] += 1
            finally:
                if writer is not None:
                    writer.close()
                    out["shards"].append(name)
    return out


def _sample(
    row: dict[str, Any], image_id: int, image_format: str, data: bytes
) -> dict[str, Any]:
    """One sample: the image, its metadata and its captions (``txt``)."""
    captions = [" ".join(c.split()) for c in row["captions"]]  # one line each
    meta = {
        "captions": captions,
        "file_name": row["file_name"],
        "image_id": image_id,
        "split": row["split"],
        "subsets": list(row["subsets"]),
    }
    return {
        "__key__": sample_key(image_id),
        image_format: data,
        "json": json.dumps(meta, sort_keys=True).encode(),
        "txt": "\n".join(captions).encode(),
    }


@contextlib.contextmanager
def _shared_folder(out_dir: str | os.PathLike, dist: DistInfo) -> Iterator[Path]:
    """The temporary folder every rank writes into; rank 0 owns and swaps it."""
    if not dist.enabled:
        with atomic_dir(out_dir) as tmp:
            yield tmp
        return
    import torch.distributed as tdist

    if dist.is_main:
        with atomic_dir(out_dir) as tmp:
            tdist.broadcast_object_list([str(tmp)], src=0)
            yield tmp
    else:
        name: list[Any] = [None]
        tdist.broadcast_object_list(name, src=0)
        yield Path(name[0])


def _gather(local: dict[str, Any], dist: DistInfo) -> list[dict[str, Any]]:
    if not dist.enabled:
        return [local]
    import torch.distributed as tdist

    everyone: list[Any] = [None] * dist.world_size
    tdist.all_gather_object(everyone, local)
    return everyone


def _merged(parts: list[dict[str, Any]]) -> dict[str, Any]:
    corrupt = sorted(i for p in parts for i in p["corrupt"])
    missing = sorted(i for p in parts for i in p["missing"])
    return {
        "written": sum(p["written"] for p in parts),
        "skipped_corrupt": len(corrupt),
        "skipped_corrupt_ids": corrupt,
        "skipped_missing": len(missing),
        "skipped_missing_ids": missing,
        "shards": sorted(s for p in parts for s in p["shards"]),
    }
