"""The embeddings store where it enters training and evaluation: CLIP metadata
present, every shard image embedded, one CLIP model; the embed stage on
unreadable images. Real data: the ``coco`` fixture (8 sample images)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import fails, last_line

from cvae.core.errors import CVAEError
from cvae.data.embeddings import METADATA_KEY
from cvae.data.pairs import image_conditions, load_longtext, shard_split
from cvae.data.shards import shard_index

FIX = "re-run coco_embed (dvc repro coco_embed)"


def rewritten(src: Path, to: Path, *, rows: int | None = None, **meta) -> Path:
    """``src`` with only its first ``rows`` rows and its CLIP metadata updated
    (a value None drops the key; ``meta=None`` drops all of it)."""
    t = pq.read_table(src)
    if rows is not None:
        t = t.slice(0, rows)
    if meta.pop("meta", True) is None:
        t = t.replace_schema_metadata(None)
    elif meta:
        old = json.loads(t.schema.metadata[METADATA_KEY])
        new = {k: v for k, v in (old | meta).items() if v is not None}
        t = t.replace_schema_metadata({METADATA_KEY: json.dumps(new)})
    pq.write_table(t, to)
    return to


def refusal(ids, text: Path, image: Path, condition_on: str = "text") -> str:
    with pytest.raises(CVAEError) as e:
        image_conditions(ids, text, image, condition_on=condition_on)
    message = str(e.value)
    assert "\n" not in message and message.endswith(FIX), message
    return message


def test_embeddings_without_clip_metadata_are_refused(coco, tmp_path: Path) -> None:
    ids, _ = shard_index(coco.root / "shards64")
    bare = rewritten(coco.text, tmp_path / "bare.parquet", meta=None)
    assert refusal(ids, bare, coco.image) == (
        f"{bare} has no CLIP metadata (model, pretrained, random_init): {FIX}"
    )
    half = rewritten(coco.image, tmp_path / "half.parquet", model=None)
    assert f"{half} has no CLIP metadata (model): " in refusal(
        ids, coco.text, half, "image"
    )


def test_embeddings_missing_shard_images_are_refused(coco, tmp_path: Path) -> None:
    """A file cut short (or from another manifest) is refused, never trained on
    the images it happens to cover."""
    shards = coco.root / "shards64"
    ids, splits = shard_index(shards)
    t = pq.read_table(coco.text)
    first = t.column("image_id")[0].as_py()  # rows are in image id order
    cut = rewritten(coco.text, tmp_path / "cut.parquet", rows=5)  # 1 image's captions
    assert first in ids and t.slice(0, 5).column("image_id").to_pylist() == [first] * 5
    assert refusal(ids, cut, coco.image) == (
        f"7 of the 8 images in the shards have no embedding in {cut}: {FIX}"
    )
    n_val = splits.count("val")
    with pytest.raises(CVAEError, match=f"of the {n_val} val images in the shards"):
        shard_split(shards, cut, coco.image, condition_on="text", split="val")
    n_train = splits.count("train")
    with pytest.raises(CVAEError, match=f"of the {n_train} train images in the shards"):
        load_longtext(shards, cut, coco.image, condition_on="text", split="train")
    one = rewritten(coco.image, tmp_path / "one.parquet", rows=7)
    assert refusal(ids, coco.text, one, "image") == (
        f"1 of the 8 images in the shards have no embedding in {one}: {FIX}"
    )
    assert len(image_conditions(ids, coco.text, one, condition_on="text").eval_conds)


def test_text_and_image_embeddings_of_two_clip_models_are_refused(
    coco, tmp_path: Path
) -> None:
    ids, _ = shard_index(coco.root / "shards64")
    other = rewritten(coco.image, tmp_path / "other.parquet", model="ViT-B-32")
    assert f"{other} was made with CLIP ViT-B-32 but {coco.text} with " in refusal(
        ids, coco.text, other, "image"
    )


def test_embed_stage_refuses_a_folder_of_unreadable_images(
    coco, tmp_path: Path, capsys
) -> None:
    """coco_data.images pointing at zero-byte .jpg files: one line, no output."""
    from stages import coco_embed

    empty = tmp_path / "images"
    empty.mkdir()
    for f in coco.images.iterdir():
        (empty / f.name).touch()
    out = tmp_path / "out"
    err = last_line(  # after the random-CLIP warning
        fails(
            capsys,
            coco_embed.main,
            manifest=coco.manifest,
            images=empty,
            text_out=out / "t.parquet",
            image_out=out / "i.parquet",
            metrics=out / "e.json",
            params=coco.params(),
        )
    )
    assert err == (
        f"error: none of the 8 manifest images could be read from {empty} "
        "(missing, empty or not images): check --images (coco_data.images)"
    )
    assert not out.exists() or not any(out.iterdir())
