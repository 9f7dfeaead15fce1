"""coco_evaluate's inputs: embeddings of another CLIP model than the one the
model file was trained on are refused with one line, before any output."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import SMALL_CLIP, typed_params

from cvae.core.errors import CVAEError
from cvae.data.embeddings import METADATA_KEY
from cvae.evaluation.coco import evaluate_coco


def test_embeddings_of_another_clip_than_the_model_learned_are_refused(
    coco, tmp_path: Path
) -> None:
    t = pq.read_table(coco.text)
    meta = json.loads(t.schema.metadata[METADATA_KEY]) | {"model": "ViT-B-32"}
    other = tmp_path / "other.parquet"
    pq.write_table(t.replace_schema_metadata({METADATA_KEY: json.dumps(meta)}), other)
    out = tmp_path / "out"
    params = typed_params({"coco": {"evaluate": {"device": "cpu"}}}).coco.evaluate
    with pytest.raises(CVAEError) as e:
        evaluate_coco(
            params,
            coco.root / "shards64",
            other,
            coco.image,
            coco.model,
            out / "r.png",
            out / "g.png",
        )
    assert str(e.value) == (
        f"{other} was made with CLIP ViT-B-32 but {coco.model} was trained on CLIP "
        f"{SMALL_CLIP} vectors: re-run coco_embed and coco_train "
        "(dvc repro coco_train)"
    )
    assert not out.exists()
