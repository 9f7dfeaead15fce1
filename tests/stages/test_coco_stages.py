"""Tiny end-to-end long-text run: filter, shard, embed, train, evaluate, CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from conftest import ROOT
from PIL import Image
from typer.testing import CliRunner

from cvae.data.coco import DEFAULT_KEYWORDS, filter_coco, subset_coco
from cvae.data.pairs import CaptionChoice, load_longtext
from cvae.models.checkpoint import load_model
from cvae_cli.main import app
from stages import coco_embed as embed
from stages import coco_evaluate, coco_train
from stages import coco_filter as filter
from stages import coco_shard as shard


@pytest.fixture(scope="module")
def tiny_coco(coco_sample, tmp_path_factory) -> Path:
    """16 real bucolic/nature images of the COCO sample, in COCO format."""
    table, _ = filter_coco(
        coco_sample / "captions.json",
        coco_sample / "images",
        DEFAULT_KEYWORDS,
        val_fraction=0.2,
        seed=0,
    )
    ids = table.column("image_id").to_pylist()[:16]
    out = tmp_path_factory.mktemp("coco")
    subset_coco(coco_sample / "captions.json", coco_sample / "images", out, ids)
    return out


def tiny_params(path: Path, **top) -> Path:
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p.update(top)
    p["filter"]["val_fraction"] = 0.25
    p["embed"].update(model="ViT-S-32-alt", device="cpu", batch_size=32)
    p["coco"]["model"].update(base_channels=4, latent_dim=8, embed_dim=16)
    p["coco"]["train"].update(epochs=2, batch_size=8, device="cpu")
    p["coco"]["evaluate"].update(
        device="cpu", grid_n=4, prompts=p["coco"]["evaluate"]["prompts"][:2]
    )
    path.write_text(yaml.safe_dump(p))
    return path


def run_long_text(
    src: Path, params: Path, tmp: Path, fid_weights: Path | None
) -> tuple[Path, Path]:
    """filter, shard, embed, train, evaluate on the COCO-format set ``src``:
    (data folder, metrics folder) under ``tmp``."""
    d, m = tmp / "data", tmp / "metrics"
    filter.main(
        captions=src / "captions.json",
        images=src / "images",
        out=d / "manifest.parquet",
        metrics=m / "filter.json",
        params=params,
    )
    shard.main(
        manifest=d / "manifest.parquet",
        images=src / "images",
        out=d / "shards",
        metrics=m / "shard.json",
        params=params,
    )
    embed.main(
        manifest=d / "manifest.parquet",
        images=src / "images",
        text_out=d / "text.parquet",
        image_out=d / "image.parquet",
        metrics=m / "embed.json",
        info=m / "embed.info.json",
        params=params,
    )
    coco_train.main(
        shards=d / "shards",
        text_emb=d / "text.parquet",
        image_emb=d / "image.parquet",
        model_out=d / "model.safetensors",
        history=tmp / "h.json",
        state=d / "resume.pt",
        params=params,
    )
    coco_evaluate.main(
        shards=d / "shards",
        text_emb=d / "text.parquet",
        image_emb=d / "image.parquet",
        model=d / "model.safetensors",
        metrics=m / "coco.json",
        info=m / "coco.info.json",
        recon_grid=tmp / "r.png",
        gen_grid=tmp / "g.png",
        fid_weights=fid_weights,
        params=params,
    )
    return d, m


def test_default_params_work_on_ten_images(tiny_coco, tmp_path) -> None:
    """Every long-text stage with the repository's params as they are (but 2
    epochs): 10 images give 6 training images, fewer than one batch of 32, one
    shard, and every loader, worker and batch default must cope."""
    sub = tmp_path / "coco"
    ids = [
        i["id"] for i in json.loads((tiny_coco / "captions.json").read_text())["images"]
    ]
    subset_coco(
        tiny_coco / "captions.json", tiny_coco / "images", sub, sorted(ids)[:10]
    )
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["coco"]["train"]["epochs"] = 2
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(p))
    d, m = run_long_text(sub, params, tmp_path, fid_weights=None)
    assert json.loads((m / "filter.json").read_text())["kept"] == 10
    res = json.loads((m / "coco.json").read_text())
    assert res["n"] >= 1 and math.isfinite(res["mse"])


@pytest.mark.parametrize(
    "conditioning, condition_on", [("concat", "text"), ("add", "image")]
)
def test_long_text_end_to_end(
    tiny_coco, tmp_path, conditioning, condition_on, request
) -> None:
    params = tiny_params(
        tmp_path / "params.yaml",
        size=64,
        conditioning=conditioning,
        condition_on=condition_on,
    )
    # FID in one of the two cases (the Inception passes cost ~0.1 s per image)
    with_fid = condition_on == "image"
    weights = request.getfixturevalue("fid_weights")[0] if with_fid else None
    d, m = run_long_text(tiny_coco, params, tmp_path, fid_weights=weights)
    assert json.loads((m / "embed.info.json").read_text())["random_init"] is True
    model, meta = load_model(d / "model.safetensors")
    assert meta["config"]["image_size"] == 64
    assert meta["config"]["conditioning"] == conditioning
    assert meta["info"]["condition_on"] == condition_on
    assert meta["config"]["cond_dim"] == 256  # ViT-S-32-alt width
    assert len(json.loads((tmp_path / "h.json").read_text())) == 2
    res = json.loads((m / "coco.json").read_text())
    info = json.loads((m / "coco.info.json").read_text())
    assert all(  # a DVC metrics file: numbers only
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in res.values()
    )
    assert res["n"] >= 1 and 0 < res["mse"] < 64 * 64 * 3 and -1 <= res["ssim"] <= 1
    assert info["clip_random_init"] is True and "WARNING" in info
    assert "RANDOM" in info["clip_score_caveat"] and res["clip_score_n"] == res["n"]
    for k in ("prompts", "generated", "recon", "real"):
        assert 0 <= res[f"clip_score_{k}"] <= 100
    if with_fid:
        assert res["fid_n"] == res["n"] and "biased" in info["fid_note"]
        assert res["fid_recon"] > 0 and res["fid_generate"] > 0
    else:
        assert "fid_recon" not in res and info["fid_recon"] is None  # off, not faked
    assert Image.open(tmp_path / "g.png").size == (160 + 4 * 66 + 2, 2 * 66 + 2)

    out = tmp_path / "cows.png"
    r = CliRunner().invoke(
        app,
        [
            "generate",
            "Cows grazing on a green hillside. The sky is blue.",
            "--model",
            str(d / "model.safetensors"),
            "--n",
            "4",
            "--seed",
            "0",
            "--out",
            str(out),
            "--device",
            "cpu",
        ],
    )
    assert r.exit_code == 0, r.output
    assert Image.open(out).size == (4 * 66 + 2, 66 + 2)
    assert "CLIP has RANDOM weights" in r.output  # said loudly, with the CLI's fix
    assert "point --clip-checkpoint at a local checkpoint file" in r.output


def test_caption_choice_draws_each_images_own_captions() -> None:
    vecs = torch.arange(7, dtype=torch.float32)[:, None]  # caption k has value k
    choice = CaptionChoice(
        vectors=vecs, first=torch.tensor([0, 3, 5]), count=torch.tensor([3, 2, 2])
    )
    gen = torch.Generator().manual_seed(0)
    seen: dict[int, set] = {0: set(), 1: set(), 2: set()}
    for _ in range(50):
        got = choice(torch.tensor([0, 1, 2]), gen)[:, 0].long().tolist()
        for img, v in enumerate(got):
            seen[img].add(v)
    assert seen == {0: {0, 1, 2}, 1: {3, 4}, 2: {5, 6}}
    assert choice.fixed()[:, 0].tolist() == [0, 3, 5]


def test_bad_condition_on(tmp_path) -> None:
    from cvae.core.errors import CVAEError

    with pytest.raises(CVAEError, match="condition_on 'audio' unknown"):
        load_longtext(tmp_path, tmp_path, tmp_path, condition_on="audio", split=None)
