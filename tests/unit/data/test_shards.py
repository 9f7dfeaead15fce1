"""WebDataset shards: image loading, crop/resize, round-trip, byte identity, stage."""

import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from conftest import SHARED_DATA, write_params
from PIL import Image

from cvae.core.errors import CVAEError
from cvae.data import shards as shards_mod
from cvae.data.coco import MANIFEST_SCHEMA, write_manifest
from cvae.data.shard_writer import write_shards
from cvae.data.shards import (
    ImageReadError,
    center_crop_resize,
    iter_shards,
    load_rgb,
    load_shards,
)

DATA = SHARED_DATA
SAMPLE = DATA / "coco-sample"
GRAY_ID = 431848  # the one grayscale image of the sample
pytestmark = pytest.mark.skipif(
    not (SAMPLE / "images").is_dir(),
    reason=f"real COCO sample absent at {SAMPLE} (see shared/data/README.md)",
)


def _manifest(image_ids: list[int]) -> pa.Table:
    """A manifest over sample images (captions are not needed to shard)."""
    rows = [
        {
            "image_id": i,
            "file_name": f"{i:012d}.jpg",
            "subsets": ["nature"],
            "captions": ["A photo."],
            "split": "val" if n % 4 == 0 else "train",
        }
        for n, i in enumerate(image_ids)
    ]
    return pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA)


@pytest.fixture(scope="module")
def sample_ids() -> list[int]:
    ids = sorted(int(p.stem) for p in (SAMPLE / "images").glob("*.jpg"))
    return sorted(ids[:7] + [GRAY_ID])


@pytest.fixture
def images(tmp_path: Path, sample_ids: list[int]) -> Path:
    """8 real images, one grayscale, in their own folder."""
    folder = tmp_path / "images"
    folder.mkdir()
    for i in sample_ids:
        shutil.copyfile(SAMPLE / "images" / f"{i:012d}.jpg", folder / f"{i:012d}.jpg")
    return folder


def test_load_rgb_converts_modes(tmp_path: Path) -> None:
    gray = load_rgb(SAMPLE / "images" / f"{GRAY_ID:012d}.jpg")
    assert gray.mode == "RGB"
    a = np.asarray(gray)
    assert np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 1], a[..., 2])

    rgba = Image.new("RGBA", (4, 3), (10, 20, 30, 0))  # fully transparent
    rgba.save(tmp_path / "rgba.png")
    assert np.all(np.asarray(load_rgb(tmp_path / "rgba.png")) == 255)  # over white
    Image.new("P", (4, 3), 7).save(tmp_path / "p.png")
    Image.new("CMYK", (4, 3), (0, 255, 0, 0)).save(tmp_path / "cmyk.jpg")
    Image.fromarray(np.full((3, 4), 65535, np.uint16)).save(tmp_path / "g16.png")
    for name in ("p.png", "cmyk.jpg", "g16.png"):
        img = load_rgb(tmp_path / name)
        assert img.mode == "RGB" and img.size == (4, 3)
    assert np.all(np.asarray(load_rgb(tmp_path / "g16.png")) == 255)


def test_load_rgb_corrupt_raises(tmp_path: Path) -> None:
    src = (SAMPLE / "images" / "000000000139.jpg").read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(src[: len(src) // 2])
    (tmp_path / "text.jpg").write_text("not an image")
    for name in ("trunc.jpg", "text.jpg"):
        with pytest.raises(ImageReadError, match="cannot read image"):
            load_rgb(tmp_path / name)
    with pytest.raises(FileNotFoundError):
        load_rgb(tmp_path / "absent.jpg")


def test_center_crop_resize_is_crop_then_bicubic() -> None:
    img = load_rgb(SAMPLE / "images" / "000000000139.jpg")  # 640 x 426
    out = center_crop_resize(img, 64)
    assert out.size == (64, 64) and out.mode == "RGB"
    ref = img.crop((107, 0, 533, 426)).resize((64, 64), Image.Resampling.BICUBIC)
    assert np.array_equal(np.asarray(out), np.asarray(ref))
    tall = Image.fromarray(np.arange(30 * 10 * 3, dtype=np.uint8).reshape(30, 10, 3))
    assert np.array_equal(
        np.asarray(center_crop_resize(tall, 10)), np.asarray(tall)[10:20]
    )


def test_round_trip_equals_source(tmp_path: Path, images: Path) -> None:
    ids = sorted(int(p.stem) for p in images.iterdir())
    stats = write_shards(_manifest(ids), images, tmp_path / "s", size=64, shard_size=3)
    assert stats["written"] == 8 and stats["skipped_corrupt"] == 0
    assert stats["shards"] == [f"shard-{i:06d}.tar" for i in range(3)]

    got_ids, got_images, meta = load_shards(tmp_path / "s")
    assert got_ids.dtype == np.int64 and got_ids.tolist() == ids
    assert got_images.shape == (8, 64, 64, 3) and got_images.dtype == np.uint8
    for i, image, m in zip(got_ids, got_images, meta, strict=True):
        ref = center_crop_resize(load_rgb(images / f"{i:012d}.jpg"), 64)
        assert np.array_equal(image, np.asarray(ref))  # PNG is lossless
        assert m["image_id"] == i and m["subsets"] == ["nature"]
    assert [m["split"] for m in meta] == _manifest(ids).column("split").to_pylist()

    streamed = list(iter_shards(tmp_path / "s"))  # webdataset path
    assert [s[0] for s in streamed] == ids
    assert all(np.array_equal(s[1], im) for s, im in zip(streamed, got_images))
    assert [s[2] for s in streamed] == meta
    urls = [str(tmp_path / "s" / name) for name in stats["shards"]]
    assert [s[0] for s in iter_shards(urls)] == ids


def test_shards_are_byte_identical(tmp_path: Path, images: Path) -> None:
    manifest = _manifest(sorted(int(p.stem) for p in images.iterdir()))
    for fmt in ("png", "jpg"):
        a, b = tmp_path / f"a-{fmt}", tmp_path / f"b-{fmt}"
        write_shards(manifest, images, a, size=64, shard_size=5, image_format=fmt)
        # Shuffled input rows give the same output: samples go in image_id order.
        # ... and so do worker processes (2 here: results are written in order).
        shuffled = manifest.take(np.random.default_rng(0).permutation(8))
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(shards_mod, "MIN_JOBS_PER_WORKER", 1)  # 8 images, 2 workers
            write_shards(
                shuffled, images, b, size=64, shard_size=5, image_format=fmt, workers=2
            )
        names = sorted(p.name for p in a.iterdir())
        assert names == sorted(p.name for p in b.iterdir()) and len(names) == 2
        for name in names:
            assert (a / name).read_bytes() == (b / name).read_bytes()
    with tarfile.open(tmp_path / "a-png" / "shard-000000.tar") as tar:
        members = tar.getmembers()
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {
        (0, 0, 0, "cvae", "cvae")
    }
    assert [m.name for m in members[:2]] == [f"{members[0].name[:12]}.json"] + [
        f"{members[0].name[:12]}.png"
    ]
    ids, jpg, _ = load_shards(tmp_path / "a-jpg")
    _, png, _ = load_shards(tmp_path / "a-png")
    assert np.abs(jpg.astype(int) - png.astype(int)).mean() < 3  # quality 95


def test_corrupt_and_missing_are_skipped(tmp_path: Path, images: Path) -> None:
    ids = sorted(int(p.stem) for p in images.iterdir())
    bad, gone = ids[2], ids[5]
    path = images / f"{bad:012d}.jpg"
    path.write_bytes(path.read_bytes()[:2000])  # truncated JPEG
    (images / f"{gone:012d}.jpg").unlink()
    out = tmp_path / "s"
    out.mkdir()
    (out / "stale.txt").write_text("from an earlier run")
    stats = write_shards(_manifest(ids), images, out, size=64, shard_size=100)
    assert stats["written"] == 6
    assert stats["skipped_corrupt"] == 1 and stats["skipped_corrupt_ids"] == [bad]
    assert stats["skipped_missing"] == 1 and stats["skipped_missing_ids"] == [gone]
    assert sorted(p.name for p in out.iterdir()) == ["shard-000000.tar"]  # swapped
    assert sorted(load_shards(out)[0].tolist()) == sorted(set(ids) - {bad, gone})


def test_bad_arguments(tmp_path: Path, images: Path) -> None:
    manifest = _manifest([GRAY_ID])
    with pytest.raises(CVAEError, match="image_format"):
        write_shards(manifest, images, tmp_path / "s", size=64, shard_size=1,
                     image_format="webp")  # fmt: skip
    with pytest.raises(CVAEError, match="images folder"):
        write_shards(manifest, tmp_path / "none", tmp_path / "s", size=64,
                     shard_size=1)  # fmt: skip
    with pytest.raises(CVAEError, match="no shard"):
        (tmp_path / "empty").mkdir()
        load_shards(tmp_path / "empty")


def test_shard_stage_main(
    tmp_path: Path, images: Path, capsys: pytest.CaptureFixture
) -> None:
    from stages.coco_shard import main

    ids = sorted(int(p.stem) for p in images.iterdir())
    write_manifest(tmp_path / "manifest.parquet", _manifest(ids))
    shard = {"shard_size": 4, "image_format": "png"}
    params = write_params(tmp_path / "params.yaml", {"size": 64, "shard": shard})
    out, metrics = tmp_path / "shards", tmp_path / "shard.json"
    kwargs = dict(
        manifest=tmp_path / "manifest.parquet",
        images=images,
        out=out,
        metrics=metrics,
        info=tmp_path / "shard.info.json",
        params=params,
    )
    main(**kwargs)
    assert (
        "shard: wrote 8 images at 64px (png) into 2 shards" in capsys.readouterr().out
    )
    m = json.loads(metrics.read_text())
    info = json.loads((tmp_path / "shard.info.json").read_text())
    assert m["written"] == 8
    assert info["shards"] == ["shard-000000.tar", "shard-000001.tar"]
    assert load_shards(out)[1].shape == (8, 64, 64, 3)


def test_shards_carry_captions_as_txt_for_open_clip_loaders(
    tmp_path: Path, images: Path
) -> None:
    """open_clip's trainer and img2dataset readers take (image, txt) as they are."""
    import webdataset as wds

    ids = sorted(int(p.stem) for p in images.iterdir())[:3]
    manifest = _manifest(ids).to_pylist()
    for n, row in enumerate(manifest):
        row["captions"] = [f"Caption {n} of a cow.", "A second\nline  here."]
    table = pa.Table.from_pylist(manifest, schema=MANIFEST_SCHEMA)
    write_shards(table, images, tmp_path / "s", size=64, shard_size=2)
    urls = [str(p) for p in sorted((tmp_path / "s").glob("shard-*.tar"))]
    pairs = list(
        wds.WebDataset(urls, shardshuffle=False, empty_check=False)
        .decode("pil")
        .to_tuple("png", "txt", "json")
    )
    assert len(pairs) == 3
    for n, (image, text, meta) in enumerate(pairs):
        assert image.size == (64, 64)
        assert text == f"Caption {n} of a cow.\nA second line here."  # one per line
        assert meta["captions"] == text.split("\n")


def test_load_shards_decodes_only_the_split_asked_for(
    tmp_path: Path, images: Path
) -> None:
    from cvae.data.pairs import pick_loader

    ids = sorted(int(p.stem) for p in images.iterdir())
    write_shards(_manifest(ids), images, tmp_path / "s", size=32, shard_size=3)
    all_ids, all_images, metas = load_shards(tmp_path / "s")
    for split in ("train", "val"):
        got_ids, got_images, got_meta = load_shards(tmp_path / "s", split)
        rows = [k for k, m in enumerate(metas) if m["split"] == split]
        assert got_ids.tolist() == all_ids[rows].tolist() and len(rows) > 0
        assert np.array_equal(got_images, all_images[rows])
        assert got_images.flags.owndata  # one array, filled in place
        _, chw, _ = load_shards(tmp_path / "s", split, channels_first=True)
        assert chw.flags.owndata and chw.flags.c_contiguous
        assert np.array_equal(chw, got_images.transpose(0, 3, 1, 2))
    # auto: in memory while the pixels fit the budget, else streamed
    assert pick_loader("auto", 1_000, 64, 1024, 1) == "memory"  # 12 MiB
    assert pick_loader("auto", 25_600, 256, 1024, 1) == "stream"  # 4.7 GiB
    assert pick_loader("auto", 5_400, 256, 1024, 1) == "memory"  # 1,012 MiB
    assert pick_loader("auto", 5_400, 256, 1024, 2) == "stream"  # per process x 2
    assert pick_loader("stream", 10, 64, 1024, 1) == "stream"


def _damaged(src: Path, to: Path, how: str) -> Path:
    """A copy of the shard folder ``src`` whose first shard is damaged ``how``:
    cut in half, empty, foreign bytes, or its png / json members cut short."""
    shutil.copytree(src, to)
    first = sorted(to.glob("shard-*.tar"))[0]
    if how == "cut":
        first.write_bytes(first.read_bytes()[: first.stat().st_size // 2])
    elif how == "empty":
        first.write_bytes(b"")
    elif how == "foreign":
        first.write_bytes(b"PK\x03\x04" * 300)
    else:
        with tarfile.open(first) as tar:
            members = [(m, tar.extractfile(m).read()) for m in tar]
        with tarfile.open(first, "w") as tar:
            for m, b in members:
                b = b[: len(b) // 3] if m.name.endswith(f".{how}") else b
                m.size = len(b)
                tar.addfile(m, io.BytesIO(b))
    return first


@pytest.mark.parametrize("how", ["empty", "foreign", "cut", "png", "json"])
def test_a_damaged_shard_is_one_line_naming_it(
    tmp_path: Path, images: Path, how: str
) -> None:
    """Truncated, empty or foreign tars and damaged members: one line naming the
    shard file and the fix (tarfile's auto-detection spans several lines)."""
    ids = sorted(int(p.stem) for p in images.iterdir())
    write_shards(_manifest(ids), images, tmp_path / "good", size=32, shard_size=4)
    bad = _damaged(tmp_path / "good", tmp_path / "bad", how)
    with pytest.raises(CVAEError) as e:
        load_shards(tmp_path / "bad")
    message = str(e.value)
    assert message.startswith(f"shard {bad} is damaged (") and "\n" not in message
    assert message.endswith("): re-run coco_shard (dvc repro coco_shard)")


@pytest.mark.parametrize("workers", [0, 1])
def test_a_damaged_image_met_while_streaming_is_one_line(
    tmp_path: Path, images: Path, workers: int
) -> None:
    """The stream loader decodes in DataLoader workers: the worker's error comes
    back as the same one line, not the worker's traceback."""
    import torch

    from cvae.data.stream import ShardStream

    ids = sorted(int(p.stem) for p in images.iterdir())
    write_shards(_manifest(ids), images, tmp_path / "good", size=32, shard_size=4)
    bad = _damaged(tmp_path / "good", tmp_path / "bad", "png")
    stream = ShardStream(
        tmp_path / "bad",
        lambda ids, gen: torch.zeros(len(ids), 1),
        len(ids),
        len(ids),  # one batch: every image is decoded
        num_workers=workers,
        split=None,
    )
    with pytest.raises(CVAEError) as e:
        list(stream.epoch(1))
    assert str(e.value).startswith(f"shard {bad} is damaged (OSError: ")
    assert "\n" not in str(e.value)


def test_a_folder_of_empty_images_stops_the_shard_stage(
    tmp_path: Path, images: Path, capsys: pytest.CaptureFixture
) -> None:
    """coco_data.images pointing at zero-byte .jpg files: one line, exit 1, the
    previous shards untouched."""
    from conftest import fails, one_line, snapshot

    from stages.coco_shard import main

    ids = sorted(int(p.stem) for p in images.iterdir())
    write_manifest(tmp_path / "manifest.parquet", _manifest(ids))
    params = write_params(tmp_path / "params.yaml", {"size": 64})
    out = tmp_path / "shards"
    write_shards(_manifest(ids), images, out, size=64, shard_size=4)
    before = snapshot(out)
    empty = tmp_path / "empty"
    empty.mkdir()
    for f in images.iterdir():
        (empty / f.name).touch()
    err = one_line(
        fails(
            capsys,
            main,
            manifest=tmp_path / "manifest.parquet",
            images=empty,
            out=out,
            metrics=tmp_path / "shard.json",
            params=params,
        )
    )
    assert err == (
        f"error: none of the 8 manifest images could be read from {empty} "
        "(8 corrupt, 0 missing): check --images (coco_data.images); nothing was "
        f"written to {out}\n"
    )
    assert snapshot(out) == before and not (tmp_path / "shard.json").exists()
