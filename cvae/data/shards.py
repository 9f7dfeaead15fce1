"""Square RGB images in WebDataset tar shards, byte-identical from run to run.

Each sample of ``shard-%06d.tar`` holds three members sharing one key, the
zero-padded COCO image id (``000000000139``):

    <key>.png  (or .jpg)  S x S RGB image: center square crop, bicubic resize
    <key>.json            {"captions", "file_name", "image_id", "split", "subsets"}
    <key>.txt             the captions, one per line, UTF-8 (the img2dataset /
                          open_clip convention: their loaders read image + txt)

Reproducibility: tar headers carry a fixed mtime, mode, uid/gid 0 and fixed
user/group names; samples are written in image_id order; PNG is lossless with a
fixed compression level and no metadata chunks, JPEG uses fixed quality and
subsampling. Identical inputs and library versions give identical bytes.

EXIF orientation is not applied (as in the COCO annotations and most loaders):
pixels are taken as stored.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import webdataset as wds
from PIL import Image

from cvae.core.errors import CVAEError

IMAGE_FORMATS = ("png", "jpg")
SHARD_PATTERN = "shard-%06d.tar"
TAR_MTIME = 0  # fixed header fields: same bytes on every run and machine
TAR_USER = "cvae"
TAR_MODE = 0o444
PNG_COMPRESS_LEVEL = 6
MIN_JOBS_PER_WORKER = 500  # below this, starting a process costs more than it saves
JPEG_QUALITY = 95
REBUILD = "re-run coco_shard (dvc repro coco_shard)"  # the fix of a bad shard


class ImageReadError(CVAEError):
    """An image file that cannot be decoded (corrupt, truncated, not an image)."""


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Decode an image fully and return it as 8-bit RGB.

    Grayscale, palette, CMYK and 16-bit images are converted; an alpha channel
    (RGBA, LA, palette transparency) is composited over white.

    Raises:
        ImageReadError: the file is corrupt, truncated or not an image.
        FileNotFoundError: the file does not exist.
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()  # full decode: a truncated file fails here, not later
            return _to_rgb(im)
    except FileNotFoundError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ImageReadError(
            f"cannot read image {path} ({e}): re-download it or drop it"
        ) from None


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode == "RGB":
        return im.copy()
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit gray: scale to 8 bits instead of PIL's clipping conversion.
        a = np.asarray(im.convert("I"), dtype=np.float64)
        scale = 257.0 if im.mode.startswith("I;16") or a.max() > 255 else 1.0
        a8 = np.clip(np.round(a / scale), 0, 255).astype(np.uint8)
        return Image.fromarray(a8, mode="L").convert("RGB")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV, F


def center_crop_resize(img: Image.Image, size: int) -> Image.Image:
    """Center square crop (side = the shorter edge), then bicubic resize to size.

    The crop comes first, so no pixel outside the square leaks in at the edges
    (``Image.resize(box=...)`` would sample past the box). The resize is PIL's
    antialiased convolution over the whole crop (``reducing_gap=None``), so
    downscaling does not alias. Returns a size x size image.
    """
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    square = img.crop((left, top, left + side, top + side))
    return square.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=None)


def encode_image(img: Image.Image, image_format: str) -> bytes:
    """Encode deterministically: PNG (lossless, no metadata) or JPEG quality 95."""
    buf = io.BytesIO()
    if image_format == "png":
        img.save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL, optimize=False)
    elif image_format == "jpg":
        img.save(
            buf,
            format="JPEG",
            quality=JPEG_QUALITY,
            subsampling=0,  # 4:4:4, keep colour edges at small sizes
            optimize=False,
            progressive=False,
        )
    else:
        raise CVAEError(
            f"image_format={image_format!r} unknown: use one of {IMAGE_FORMATS}"
        )
    return buf.getvalue()


def sample_key(image_id: int) -> str:
    """Shard key of an image: its id zero-padded to 12 digits, as COCO names."""
    return f"{int(image_id):012d}"


def _prepare(job: tuple[str, str, int]) -> tuple[str, bytes | None]:
    """(path, format, size) -> ("ok", encoded bytes) or (why, None).

    Decode, crop, resize and encode one image: the work the shard stage spreads
    over processes. Module level, so that worker processes can run it.
    """
    path, image_format, size = job
    try:
        img = load_rgb(path)
    except FileNotFoundError:
        return "missing", None
    except ImageReadError:
        return "corrupt", None
    return "ok", encode_image(center_crop_resize(img, size), image_format)


def prepared_images(
    jobs: list[tuple[str, str, int]], workers: int
) -> Iterator[tuple[str, bytes | None]]:
    """_prepare over jobs in order, in ``workers`` processes (1: in this one).

    A spawned worker costs 1-2 s to start (imports), the work of a few hundred
    images, so each worker is given at least MIN_JOBS_PER_WORKER images.
    """
    workers = min(workers, len(jobs) // MIN_JOBS_PER_WORKER)
    if workers <= 1:
        yield from map(_prepare, jobs)
        return
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        yield from pool.imap(_prepare, jobs, chunksize=4)


def shard_paths(shard_dir: str | os.PathLike) -> list[Path]:
    """Sorted shard files of a folder written by ``write_shards``."""
    shard_dir = Path(shard_dir)
    if not shard_dir.is_dir():
        raise CVAEError(
            f"shard folder {shard_dir} not found: run coco_shard (dvc repro coco_shard)"
        )
    paths = sorted(shard_dir.glob("shard-*.tar"))
    if not paths:
        raise CVAEError(f"no shard-*.tar in {shard_dir}: {REBUILD}")
    return paths


def decode_sample(sample: dict[str, Any]) -> tuple[int, np.ndarray, dict[str, Any]]:
    """(bytes members of one sample) -> (image_id, uint8[H, W, 3], meta)."""
    meta = json.loads(sample["json"])
    data = sample.get("png", sample.get("jpg"))
    if data is None:
        raise CVAEError(f"sample {sample['__key__']} has no png/jpg: {REBUILD}")
    with Image.open(io.BytesIO(data)) as im:
        image = np.asarray(im.convert("RGB"), dtype=np.uint8)
    return int(meta["image_id"]), image, meta


def iter_shards(
    urls: str | os.PathLike | Iterable[str | os.PathLike],
) -> Iterator[tuple[int, np.ndarray, dict[str, Any]]]:
    """Stream ``(image_id, image uint8[H, W, 3], meta)`` through webdataset.

    ``urls``: a shard folder, a brace pattern (``dir/shard-{000000..000003}.tar``)
    or a list of shard paths/URLs. Order: shards in the given (folder: sorted)
    order, samples in written order, no shuffling.
    """
    if isinstance(urls, (str, os.PathLike)) and Path(urls).is_dir():
        urls = [str(p) for p in shard_paths(urls)]
    elif not isinstance(urls, str):
        urls = [str(u) for u in urls]
    dataset = wds.WebDataset(urls, shardshuffle=False, empty_check=False)
    for sample in dataset:
        yield decode_sample(sample)


def shard_index(shard_dir: str | os.PathLike) -> tuple[np.ndarray, list[str]]:
    """(image ids int64[N], split of each) of a shard folder, reading only the
    small json members (no image is decoded)."""
    ids: list[int] = []
    splits: list[str] = []
    for path in shard_paths(shard_dir):
        with damaged_shard(path), tarfile.open(path, "r:") as tar:
            for member in tar:
                if member.name.endswith(".json"):
                    meta = json.loads(tar.extractfile(member).read())
                    ids.append(int(meta["image_id"]))
                    splits.append(str(meta.get("split")))
    return np.asarray(ids, dtype=np.int64), splits


@contextlib.contextmanager
def damaged_shard(path: str | os.PathLike) -> Iterator[None]:
    """A truncated or foreign tar (or member) becomes one line naming the shard
    file and the fix."""
    try:
        yield
    except (tarfile.TarError, EOFError, OSError, ValueError, KeyError) as e:
        why = " ".join(str(e).split())  # tarfile's reasons span several lines
        raise CVAEError(
            f"shard {path} is damaged ({type(e).__name__}: {why}): {REBUILD}"
        ) from None


def load_shards(
    shard_dir: str | os.PathLike,
    split: str | None = None,
    *,
    channels_first: bool = False,
) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """Load the samples of a shard folder (of one ``split``, or all) into memory.

    Only the wanted split's images are decoded, each straight into one
    preallocated array, so the peak is that array (no list of images, no
    stacked copy): a 'val' split costs its own pixels, not the whole set's.
    Reads the tars with the standard library (independent of ``iter_shards``,
    which the tests compare it with).

    Returns:
        ids int64[N], images uint8[N, S, S, 3] (``channels_first``:
        uint8[N, 3, S, S], each image transposed as it is decoded, so no NCHW copy
        of the whole array is ever needed), meta list of N dicts.
    """
    _, splits = shard_index(shard_dir)
    n = sum(1 for s in splits if split is None or s == split)
    ids: list[int] = []
    metas: list[dict[str, Any]] = []
    images: np.ndarray | None = None
    for path, sample in raw_samples(shard_dir):
        with damaged_shard(path):
            images = _put(sample, split, n, ids, images, metas, channels_first)
    if images is None:
        return np.zeros(0, np.int64), np.zeros((0, 0, 0, 3), np.uint8), []
    return np.asarray(ids, dtype=np.int64), images, metas


def raw_samples(
    shard_dir: str | os.PathLike,
) -> Iterator[tuple[Path, dict[str, Any]]]:
    """(shard path, sample) of a shard folder in written order, each sample
    its undecoded members ``{"__key__": key, ext: bytes}`` (standard library tar
    reading; decode inside ``damaged_shard(path)``)."""
    for path in shard_paths(shard_dir):
        with damaged_shard(path), tarfile.open(path, "r:") as tar:
            sample: dict[str, Any] = {}
            for member in tar:
                key, _, ext = member.name.partition(".")
                if sample and sample["__key__"] != key:
                    yield path, sample
                    sample = {}
                sample["__key__"] = key
                sample[ext] = tar.extractfile(member).read()
            if sample:
                yield path, sample


def iter_split(
    shard_dir: str | os.PathLike, split: str | None
) -> Iterator[tuple[int, np.ndarray, dict[str, Any]]]:
    """``(image_id, image uint8[H, W, 3], meta)`` of one split (None: all), in
    written order; other splits' images are never decoded."""
    for path, sample in raw_samples(shard_dir):
        with damaged_shard(path):
            wanted = split is None or json.loads(sample["json"]).get("split") == split
            decoded = decode_sample(sample) if wanted else None
        if decoded is not None:
            yield decoded


def _put(
    sample: dict[str, Any],
    split: str | None,
    n: int,
    ids: list[int],
    images: np.ndarray | None,
    metas: list[dict[str, Any]],
    channels_first: bool,
) -> np.ndarray | None:
    """Decode ``sample`` into row ``len(ids)`` of ``images`` (allocated at the
    first one) when it is of ``split``; the array."""
    if split is not None and json.loads(sample["json"]).get("split") != split:
        return images
    image_id, image, meta = decode_sample(sample)
    if channels_first:
        image = image.transpose(2, 0, 1)  # (3, S, S) view
    if images is None:
        images = np.empty((n, *image.shape), np.uint8)
    if image.shape != images.shape[1:]:
        raise CVAEError(
            f"sample {sample['__key__']} is {image.shape[-2]} px, others "
            f"{images.shape[-2]} px: {REBUILD}"
        )
    images[len(ids)] = image
    ids.append(image_id)
    metas.append(meta)
    return images
