"""CLIP weights are tracked by content: the clip_checkpoint stage, the sha256 in
the embeddings and the model, and `cvae generate` refusing other weights."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from conftest import SMALL_CLIP, write_params
from typer.testing import CliRunner

from cvae.clip.weights import checkpoint_identity, load_clip
from cvae.core.files import file_digest
from cvae.models.checkpoint import load_model, save_model
from cvae_cli.main import app
from stages import clip_checkpoint


def clip_file(path: Path, seed: int) -> Path:
    """A real open_clip state dict of SMALL_CLIP (random weights of ``seed``)."""
    enc = load_clip(SMALL_CLIP, "none", "cpu", seed=seed)
    torch.save(enc.model.state_dict(), path)
    return path


def test_identity_follows_the_file_contents(tmp_path: Path) -> None:
    assert checkpoint_identity(SMALL_CLIP, "none")["sha256"] is None
    weights = clip_file(tmp_path / "clip.pt", seed=1)
    first = checkpoint_identity(SMALL_CLIP, str(weights))
    assert first["sha256"] == file_digest(weights)
    clip_file(weights, seed=2)  # other weights, same path
    assert checkpoint_identity(SMALL_CLIP, str(weights))["sha256"] != first["sha256"]


def test_stage_rewrites_only_when_the_weights_change(tmp_path: Path) -> None:
    weights = clip_file(tmp_path / "clip.pt", seed=1)
    params = write_params(
        tmp_path / "p.yaml",
        {"embed": {"model": SMALL_CLIP, "pretrained": str(weights)}},
    )
    out = tmp_path / "data" / "clip_checkpoint.json"
    clip_checkpoint.main(out=out, params=params)
    stamp, text = out.stat().st_mtime_ns, out.read_text()
    assert json.loads(text)["sha256"] == file_digest(weights)
    clip_checkpoint.main(out=out, params=params)
    assert out.stat().st_mtime_ns == stamp  # unchanged: not even rewritten
    clip_file(weights, seed=2)
    clip_checkpoint.main(out=out, params=params)
    assert (
        json.loads(out.read_text())["sha256"]
        == file_digest(weights)
        != json.loads(text)["sha256"]
    )


def test_generate_refuses_other_clip_weights(coco, tmp_path: Path) -> None:
    trained = clip_file(tmp_path / "trained.pt", seed=1)
    other = clip_file(tmp_path / "other.pt", seed=2)
    model, meta = load_model(coco.model)
    clip = meta["info"]["clip"] | {
        "pretrained": str(trained),
        "random_init": False,
        "sha256": file_digest(trained),
    }
    path = tmp_path / "model.safetensors"
    save_model(path, model, "image", meta["info"] | {"clip": clip})
    runner = CliRunner()
    out = tmp_path / "g.png"
    base = ["generate", "A cow.", "--model", str(path), "--out", str(out)]
    r = runner.invoke(app, [*base, "--clip-checkpoint", str(other)])
    assert r.exit_code == 1 and "not the ones this model was trained with" in r.output
    assert not out.exists()
    r = runner.invoke(app, base)  # the weights it names: fine
    assert r.exit_code == 0, r.output
    assert out.exists()


def test_generate_refuses_real_weights_for_a_random_clip_model(coco, tmp_path) -> None:
    """The sample model learned random-CLIP conditions (no sha256 to compare):
    real weights for the prompt would be a different encoder, refused."""
    real = clip_file(tmp_path / "real.pt", seed=1)
    out = tmp_path / "g.png"
    r = CliRunner().invoke(
        app,
        ["generate", "A cow.", "-m", str(coco.model), "-o", str(out)]
        + ["--clip-checkpoint", str(real)],
    )
    assert r.exit_code == 1 and "trained on embeddings from random CLIP" in r.output
    assert not out.exists()
