"""coco_train's inputs checked where they enter: the embeddings' CLIP model is
``embed.model`` and has its width, every shard image has an embedding, the file
says which CLIP made it. One line each, exit 1, no output written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import SMALL_CLIP, fails, last_line

from cvae.core.errors import CVAEError
from cvae.data.embeddings import METADATA_KEY
from cvae.training.coco import check_clip
from stages import coco_train

FIX = "re-run coco_embed (dvc repro coco_embed)"


def test_check_clip() -> None:
    clip = {"model": SMALL_CLIP}
    check_clip(clip, 256, embed_model=SMALL_CLIP, path=Path("t.parquet"))
    with pytest.raises(CVAEError) as e:
        check_clip(clip, 256, embed_model="ViT-B-32", path=Path("t.parquet"))
    assert str(e.value) == (
        f"t.parquet was made with CLIP {SMALL_CLIP} but embed.model is ViT-B-32: {FIX}"
    )
    with pytest.raises(CVAEError) as e:
        check_clip(clip, 512, embed_model=SMALL_CLIP, path=Path("t.parquet"))
    assert str(e.value) == (
        f"t.parquet holds 512-d vectors but CLIP {SMALL_CLIP} gives 256-d: {FIX}"
    )


def other_clip(src: Path, to: Path) -> Path:
    """``src`` as if embedded by ViT-L-14: 768-d vectors, metadata saying so."""
    t = pq.read_table(src)
    vecs = np.ones((t.num_rows, 768), np.float32)
    col = pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel()), 768)
    t = t.set_column(t.schema.get_field_index("embedding"), "embedding", col)
    meta = json.loads(t.schema.metadata[METADATA_KEY]) | {"model": "ViT-L-14"}
    meta["dim"] = 768
    pq.write_table(t.replace_schema_metadata({METADATA_KEY: json.dumps(meta)}), to)
    return to


def test_coco_train_refuses_embeddings_it_must_not_train_on(
    coco, tmp_path: Path, capsys
) -> None:
    t = pq.read_table(coco.text)
    cut = tmp_path / "cut.parquet"
    pq.write_table(t.slice(0, t.num_rows // 2), cut)  # half the captions
    bare = tmp_path / "bare.parquet"
    pq.write_table(t.replace_schema_metadata(None), bare)
    large = other_clip(coco.text, tmp_path / "large.parquet")
    cases = [
        (large, f"{large} was made with CLIP ViT-L-14 but embed.model is {SMALL_CLIP}"),
        (cut, f"of the 2 val images in the shards have no embedding in {cut}"),
        (bare, f"{bare} has no CLIP metadata (model, pretrained, random_init)"),
    ]
    out = tmp_path / "out"
    for text, message in cases:
        err = last_line(
            fails(
                capsys,
                coco_train.main,
                shards=coco.root / "shards64",
                text_emb=text,
                image_emb=coco.image,
                model_out=out / "m.safetensors",
                history=out / "h.json",
                state=out / "s.pt",
                params=coco.params(),
            )
        )
        assert err.startswith("error: ") and message in err, err
        assert err.endswith(FIX)
        assert not out.exists() or not any(out.iterdir())
