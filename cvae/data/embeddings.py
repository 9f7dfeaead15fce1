"""The embeddings store: one Parquet file of (image_id, extra columns,
embedding) rows, with what produced the vectors in its schema metadata.

Shape letters: N rows, D embedding width.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cvae.core.errors import CVAEError
from cvae.core.files import atomic_path, read_parquet

METADATA_KEY = b"cvae.embeddings"
CLIP_KEYS = ("model", "pretrained", "random_init")  # what made the vectors
REBUILD = "re-run coco_embed (dvc repro coco_embed)"


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
        random_init, dim, ...). Extra columns: ``embeddings_table``.
    """
    table = embeddings_table(path)
    ids = table.column("image_id").to_numpy().astype(np.int64, copy=False)
    return ids, table_vectors(table), table_metadata(table)


def embeddings_table(path: str | os.PathLike) -> pa.Table:
    """A parquet from ``write_embeddings`` as a pyarrow Table, every column."""
    table = read_parquet(path, what="embeddings", stage="coco_embed")
    if "embedding" not in table.column_names or "image_id" not in table.column_names:
        raise CVAEError(f"{path} is not an embeddings file: {REBUILD}")
    return table


def table_metadata(table: pa.Table) -> dict[str, Any]:
    """What produced an embeddings table (model, pretrained, random_init, dim, ...)."""
    return json.loads((table.schema.metadata or {}).get(METADATA_KEY, b"{}"))


def clip_metadata(table: pa.Table, path: str | os.PathLike) -> dict[str, Any]:
    """``table_metadata`` of CLIP vectors, refused without ``CLIP_KEYS``: a
    condition whose model is unknown cannot be matched by the prompts' CLIP."""
    try:
        meta = table_metadata(table)
    except ValueError:  # not JSON
        meta = None
    meta = meta if isinstance(meta, dict) else {}
    missing = [k for k in CLIP_KEYS if k not in meta]
    if missing:
        raise CVAEError(
            f"{path} has no CLIP metadata ({', '.join(missing)}): {REBUILD}"
        )
    return meta


def table_vectors(table: pa.Table) -> np.ndarray:
    """The ``embedding`` column as float32[N, D]: a view of the table's buffer
    where it is one chunk (no copy), else one concatenated array."""
    column = table.column("embedding")
    d = column.type.list_size
    parts = [
        c.flatten().to_numpy(zero_copy_only=False).reshape(-1, d) for c in column.chunks
    ]
    if len(parts) == 1:
        vectors = parts[0]
    else:
        vectors = np.concatenate(parts) if parts else np.zeros((0, d), np.float32)
    return vectors.astype(np.float32, copy=False)
