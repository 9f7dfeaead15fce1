"""Fashion-MNIST from the IDX files (as installed by Debian's dataset-fashion-mnist).

Images are uint8 (N, 28, 28), labels int64 (N,). The IDX format: a big-endian
magic number (0x00000803 for images, 0x00000801 for labels), the dimension
sizes as big-endian uint32, then the raw bytes.
"""

from __future__ import annotations

import gzip
import os
import zipfile
from pathlib import Path

import numpy as np

from cvae.core.errors import CVAEError
from cvae.core.files import atomic_path
from cvae.data.prompts import CLASS_NAMES, by_class

APT_HINT = "install it with `sudo apt-get install -y dataset-fashion-mnist`"
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
DATASET_KEYS = ("train_images", "train_labels", "test_images", "test_labels")
SIDE = 28  # image side in pixels
REBUILD = "dvc repro fashion_data"


def _find(root: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (root / name).is_file():
            return root / name
    raise CVAEError(f"Fashion-MNIST file {root / (stem + '.gz')} not found: {APT_HINT}")


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (optionally gzipped) into a numpy array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise CVAEError(f"cannot read {path} ({e}): reinstall it, {APT_HINT}") from e
    if len(raw) < 8 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise CVAEError(f"{path} is not a uint8 IDX file: {APT_HINT}")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    n = int(np.prod(dims))
    if len(raw) - offset != n:
        raise CVAEError(f"{path} is truncated ({len(raw) - offset} of {n} bytes)")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)


def load_split(root: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Return (images uint8 (N,28,28), labels int64 (N,)) of 'train' or 'test'."""
    root = Path(root)
    if not root.is_dir():
        raise CVAEError(f"Fashion-MNIST folder {root} not found: {APT_HINT}")
    img_stem, lab_stem = FILES[split]
    images = read_idx(_find(root, img_stem))
    labels = read_idx(_find(root, lab_stem)).astype(np.int64)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise CVAEError(f"{root}: {split} images and labels do not match: {APT_HINT}")
    return images, labels


def subset(
    images: np.ndarray, labels: np.ndarray, limit: int | None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A class-balanced-in-expectation random subset of ``limit`` items (sorted)."""
    if limit is None or limit >= len(images):
        return images, labels
    idx = np.sort(np.random.default_rng(seed).permutation(len(images))[:limit])
    return images[idx], labels[idx]


def save_dataset(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Save arrays as one .npz, atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def load_dataset(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Load the .npz written by :func:`save_dataset` (no pickles), checked by
    :func:`check_dataset`: every reader may index its four arrays as they are."""
    path = Path(path)
    if not path.is_file():
        raise CVAEError(f"{path} not found: run fashion_data first ({REBUILD})")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise CVAEError(
            f"{path} is not a readable .npz ({type(e).__name__}: {e}): "
            f"re-run fashion_data ({REBUILD})"
        ) from None
    return check_dataset(path, arrays)


def check_dataset(
    path: str | os.PathLike, arrays: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """``arrays`` if they are a Fashion-MNIST dataset as ``build_dataset`` writes
    it: for each split, images uint8 (N, 28, 28) with N >= 1 and N integer labels
    in 0..9 (returned as int64); else one line naming the fix."""
    fix = f"re-run fashion_data ({REBUILD})"
    missing = [k for k in DATASET_KEYS if k not in arrays]
    if missing:
        raise CVAEError(f"{path} lacks {', '.join(missing)}: {fix}")
    for split in FILES:
        x, y = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if x.dtype != np.uint8 or x.shape[1:] != (SIDE, SIDE) or not len(x):
            raise CVAEError(
                f"{path}: {split}_images is {x.dtype} {x.shape}, not uint8 "
                f"(N, {SIDE}, {SIDE}) with N >= 1: {fix}"
            )
        if not np.issubdtype(y.dtype, np.integer) or y.shape != (len(x),):
            raise CVAEError(
                f"{path}: {split}_labels is {y.dtype} {y.shape}, not {len(x)} "
                f"integer labels (one per image): {fix}"
            )
        bad = (y < 0) | (y >= len(CLASS_NAMES))
        if bad.any():
            raise CVAEError(
                f"{path}: {int(bad.sum())} {split}_labels outside 0.."
                f"{len(CLASS_NAMES) - 1} (e.g. {int(y[bad][0])}): {fix}"
            )
        arrays[f"{split}_labels"] = y.astype(np.int64, copy=False)
    return arrays


def build_dataset(
    root: str | os.PathLike,
    out: Path,
    *,
    train_limit: int | None,
    test_limit: int | None,
    seed: int,
) -> dict:
    """Read the IDX files under ``root``, keep ``train_limit`` / ``test_limit``
    images of each split (None: all; which ones: ``seed``), save to ``out``."""
    xtr, ytr = load_split(root, "train")
    xte, yte = load_split(root, "test")
    xtr, ytr = subset(xtr, ytr, train_limit, seed)
    xte, yte = subset(xte, yte, test_limit, seed + 1)
    save_dataset(
        out, train_images=xtr, train_labels=ytr, test_images=xte, test_labels=yte
    )
    return {
        "train": len(xtr),
        "test": len(xte),
        "train_per_class": by_class(np.bincount(ytr, minlength=10).tolist()),
        "test_per_class": by_class(np.bincount(yte, minlength=10).tolist()),
    }
