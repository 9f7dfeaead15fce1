"""The reliability suite: bad input of every kind (params, files, CLI arguments).

Each case asserts a non-zero exit, exactly one ``error:`` line naming the problem
(no traceback), and that the outputs of an earlier good run are byte-identical
afterwards. A Hypothesis property mutates params.yaml at random and asserts the
schema answers with a valid configuration or one line, never anything else.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import (
    SMALL_CLIP,
    call,
    dump_yaml,
    fails,
    last_line,
    mutate,
    one_line,
    repo_params,
    snapshot,
    temp_files,
    write_params,
)
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from cvae.core.errors import CVAEError
from cvae.models.checkpoint import load_model, save_model
from cvae_cli.main import app
from stages import (
    check_params,
    coco_train,
    fashion_evaluate,
    fashion_train,
)
from stages import coco_filter as filter_stage
from stages import (
    coco_shard as shard,
)


@pytest.fixture()
def stamped(tmp_path: Path) -> tuple[Path, bytes]:
    """check_params' output after a good run: (its path, its bytes)."""
    out = tmp_path / "data" / "params.ok"
    call(check_params.main, out=out, params=write_params(tmp_path / "good.yaml"))
    return out, out.read_bytes()


def test_check_params_refuses_with_one_line_and_keeps_its_output(
    tmp_path, capsys, stamped
) -> None:
    """The stage behind `dvc repro`'s first step: exit 2, one line naming the
    file, and the previous output untouched (the messages: tests/unit/params)."""
    bad = tmp_path / "params.yaml"
    for text in (dump_yaml(mutate(repo_params(), "size", 100)), "- fashion\n"):
        bad.write_text(text)
        err = one_line(
            fails(capsys, check_params.main, code=2, out=stamped[0], params=bad)
        )
        assert err.startswith(f"error: {bad}")
        assert stamped[0].read_bytes() == stamped[1]
    err = one_line(
        fails(capsys, check_params.main, code=2, out=stamped[0], params=tmp_path / "no")
    )
    assert "not found: run from the project root" in err


def test_every_stage_refuses_bad_params_before_touching_outputs(
    tiny_fashion, coco, tmp_path, capsys
) -> None:
    """The same check guards each stage run on its own (outside dvc repro)."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "m.safetensors").write_bytes(b"from the last good run")
    before = snapshot(out)
    bad = write_params(tmp_path / "bad.yaml", {"fashion": {"train": {"epochs": 1.5}}})
    kw = dict(model_out=out / "m.safetensors", history=out / "h", state=out / "s")
    for main, args in (
        (fashion_train.main, dict(arch="fc", data=tiny_fashion)),
        (
            coco_train.main,
            dict(
                shards=coco.root / "shards64", text_emb=coco.text, image_emb=coco.image
            ),
        ),
    ):
        err = one_line(fails(capsys, main, code=2, params=bad, **args, **kw))
        assert "fashion.train.epochs = 1.5: an integer is required" in err
        assert snapshot(out) == before


# -- files: damaged, foreign or inconsistent inputs ----------------------------------
def truncate(path: Path, to: Path) -> Path:
    data = path.read_bytes() if path.is_file() else b""
    to.write_bytes(data[: len(data) // 2])
    return to


def nan_weights(model: Path, to: Path) -> Path:
    """The model file with one weight set to NaN (written around save_model)."""
    state = load_file(str(model))
    name = sorted(k for k, v in state.items() if v.is_floating_point())[0]
    state[name] = state[name].clone()
    state[name].view(-1)[0] = float("nan")
    from safetensors import safe_open

    with safe_open(str(model), framework="pt") as f:
        meta = f.metadata()
    save_file(state, str(to), metadata=meta)
    return to


def drop_tensor(model: Path, to: Path) -> Path:
    state = load_file(str(model))
    from safetensors import safe_open

    with safe_open(str(model), framework="pt") as f:
        meta = f.metadata()
    state.pop(sorted(state)[-1])
    save_file(state, str(to), metadata=meta)
    return to


def wide_embeddings(path: Path, to: Path) -> Path:
    """The embeddings with 768-d vectors instead of the CLIP model's width."""
    t = pq.read_table(path)
    vecs = np.zeros((t.num_rows, 768), np.float32)
    col = pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel()), 768)
    i = t.schema.get_field_index("embedding")
    pq.write_table(t.set_column(i, "embedding", col), to)
    return to


def train_error(capsys, **paths: Path) -> str:
    """The one error line of an fc fashion_train run that must fail."""
    return one_line(fails(capsys, fashion_train.main, arch="fc", **paths))


def test_fashion_files(tiny_fashion, fashion_model, tmp_path, capsys) -> None:
    """Damaged dataset, model and resume files: one line each, outputs kept."""
    params = write_params(
        tmp_path / "p.yaml",
        {
            "fashion": {
                "model": {"fc": {"hidden_dims": [32], "latent_dim": 4}},
                "train": {"epochs": 1, "batch_size": 64, "device": "cpu"},
                "evaluate": {"batch_size": 128, "device": "cpu"},
            }
        },
    )
    out = tmp_path / "out"
    outs = dict(
        metrics=out / "m.json", recon_grid=out / "r.png", gen_grid=out / "g.png"
    )
    call(
        fashion_evaluate.main,
        data=tiny_fashion,
        model=fashion_model,
        params=params,
        **outs,
    )
    before = snapshot(out)
    cases = [
        (truncate(tiny_fashion, tmp_path / "d.npz"), fashion_model, "not a readable"),
        (tiny_fashion, truncate(fashion_model, tmp_path / "t.st"), "not a readable"),
        (tiny_fashion, nan_weights(fashion_model, tmp_path / "n.st"), "holds NaN"),
        (tiny_fashion, drop_tensor(fashion_model, tmp_path / "x.st"), "tensor '"),
        (tmp_path / "none.npz", fashion_model, "not found"),
    ]
    for data, model, message in cases:
        err = one_line(
            fails(
                capsys,
                fashion_evaluate.main,
                data=data,
                model=model,
                params=params,
                **outs,
            )
        )
        assert message in err, err
        assert snapshot(out) == before and not temp_files(tmp_path)

    # A damaged resume file: one line that does not advise unsafe loading.
    (tmp_path / "train").mkdir()
    model_out = tmp_path / "train" / "model.safetensors"
    state = truncate(fashion_model, tmp_path / "train" / "resume.pt")
    train = dict(capsys=capsys, data=tiny_fashion, params=params)
    err = train_error(
        **train, model_out=model_out, history=model_out.with_name("h.json"), state=state
    )
    assert "resume checkpoint" in err and "weights_only" not in err
    assert not model_out.exists()

    # An output that cannot be written is found before the first epoch.
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    err = train_error(
        **train,
        model_out=blocker / "m.safetensors",
        history=tmp_path / "h2.json",
        state=tmp_path / "s2.pt",
    )
    assert f"cannot write {blocker / 'm.safetensors'}" in err
    assert not (tmp_path / "h2.json").exists()


def test_coco_files(coco, tmp_path, capsys) -> None:
    """Damaged shards, Parquet and captions; wrong embedding width; duplicate ids."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"from the last good run")
    before = snapshot(out)
    train_kw = dict(
        model_out=out / "model.safetensors",
        history=out / "h.json",
        state=out / "s.pt",
        params=coco.params(),
    )
    shards = tmp_path / "shards"
    shards.mkdir()
    for f in (coco.root / "shards64").iterdir():
        (shards / f.name).write_bytes(f.read_bytes()[:1000])  # cut short
    cases = [
        (
            dict(shards=shards, text_emb=coco.text, image_emb=coco.image),
            "is damaged (ReadError: unexpected end of data): re-run coco_shard",
        ),
        (
            dict(
                shards=coco.root / "shards64",
                text_emb=truncate(coco.text, tmp_path / "t.parquet"),
                image_emb=coco.image,
            ),
            "not a readable parquet file",
        ),
        (
            dict(
                shards=coco.root / "shards64",
                text_emb=wide_embeddings(coco.text, tmp_path / "w.parquet"),
                image_emb=coco.image,
            ),
            f"holds 768-d vectors but CLIP {SMALL_CLIP} gives 256-d",
        ),
    ]
    for args, message in cases:
        err = last_line(fails(capsys, coco_train.main, **args, **train_kw))
        assert message in err, err
        assert snapshot(out) == before

    # A damaged manifest for the shard stage, a captions file with one id twice.
    err = one_line(
        fails(
            capsys,
            shard.main,
            manifest=truncate(coco.manifest, tmp_path / "m.pq"),
            images=coco.images,
            out=out / "shards",
            metrics=out / "s.json",
            params=coco.params(),
        )
    )
    assert "not a readable parquet file" in err and snapshot(out) == before
    data = json.loads(coco.captions.read_text())
    data["images"].append(dict(data["images"][0], file_name="other.jpg"))
    twice = tmp_path / "twice.json"
    twice.write_text(json.dumps(data))
    err = one_line(
        fails(
            capsys,
            filter_stage.main,
            captions=twice,
            images=coco.images,
            out=out / "manifest.parquet",
            metrics=out / "f.json",
            params=coco.params(),
        )
    )
    assert f"image id {data['images'][0]['id']} is listed twice" in err
    assert snapshot(out) == before


def test_model_width_is_checked_at_load(coco, tmp_path, capsys) -> None:
    """A model whose cond_dim differs from its CLIP model is refused with the fix."""
    model, meta = load_model(coco.model)
    info = meta["info"] | {"clip": meta["info"]["clip"] | {"model": "ViT-B-32"}}
    wrong = tmp_path / "wrong.safetensors"
    save_model(wrong, model, "image", info)
    r = CliRunner().invoke(
        app,
        ["generate", "A cow.", "--model", str(wrong), "--out", str(tmp_path / "x.png")],
    )
    assert r.exit_code == 1 and "gives 512-d vectors but the model takes" in r.output
    assert not (tmp_path / "x.png").exists()


def test_non_finite_weights_are_not_saved(tmp_path) -> None:
    from conftest import make_model

    model = make_model("fc", hidden_dims=[8], latent_dim=2)
    with torch.no_grad():
        model.fc_mu.weight[0, 0] = float("inf")
    with pytest.raises(CVAEError, match="tensor 'fc_mu.weight' holds NaN or Inf"):
        save_model(tmp_path / "m.safetensors", model, "fc")
    assert not list(tmp_path.iterdir())


# -- CLI arguments -------------------------------------------------------------------
CLI_CASES = [  # (arguments, message, exit status: 2 usage, 1 runtime)
    (["--seed", str(2**64)], "Invalid value for '--seed'", 2),
    (["-s", "-1"], "Invalid value for '--seed' / '-s'", 2),
    (["-n", "0"], "Invalid value for '--n' / '-n'", 2),
    (["--scale", "0"], "Invalid value for '--scale'", 2),
    (["-o", "grid.gif"], "unknown image extension '.gif'", 2),
    (["--out", "blocker/grid.png"], "cannot write", 1),
    (["-m", "no-such-model"], "unknown model 'no-such-model'", 2),
    (["--device", "gpu"], "device 'gpu' unknown", 2),
    (["--model", "NAN"], "holds NaN or Inf", 1),
]


@pytest.mark.parametrize(
    "args, message, code", CLI_CASES, ids=[" ".join(c[0]) for c in CLI_CASES]
)
def test_bad_cli_arguments(
    fashion_model, tmp_path, monkeypatch, args, message, code
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "blocker").write_text("a file")
    nan_weights(fashion_model, tmp_path / "nan.safetensors")
    args = [str(tmp_path / "nan.safetensors") if a == "NAN" else a for a in args]
    if not {"--model", "-m"} & set(args):
        args += ["--model", str(fashion_model)]
    if not {"--out", "-o"} & set(args):
        args += ["--out", "grid.png"]
    before = snapshot(tmp_path)
    r = CliRunner().invoke(app, ["generate", "a dress", *args])
    assert r.exit_code == code and message in r.output, r.output
    errors = [x for x in r.output.splitlines() if x.lower().startswith("error")]
    assert len(errors) == 1 and "Traceback" not in r.output
    assert snapshot(tmp_path) == before  # nothing written, nothing changed
