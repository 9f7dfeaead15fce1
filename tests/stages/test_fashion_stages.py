"""Each Fashion-MNIST stage's main on a tiny real subset, then the CLI."""

from __future__ import annotations

import json

import pytest
from conftest import TINY_FASHION, write_params
from PIL import Image
from typer.testing import CliRunner

from cvae_cli.main import app
from stages import fashion_classifier, fashion_data, fashion_evaluate, fashion_train


@pytest.fixture()
def params_file(tmp_path, fashion_root):
    data = {"root": str(fashion_root), "train_limit": 512, "test_limit": 256}
    gmm = {"epochs": 2, "components": 2}  # its own schedule: 2 epochs, not 1
    vaegan = {  # a plain epoch, then one against the critic
        "epochs": 2,
        "components": 2,
        "decoder_channels": [16, 8, 8],
        "adversarial": {"start_epoch": 1, "channels": [8, 8, 16]},
    }
    fashion = TINY_FASHION | {"data": data, "model": {"gmm": gmm, "vaegan": vaegan}}
    return write_params(tmp_path / "params.yaml", {"fashion": fashion})


@pytest.mark.parametrize("arch", ["fc", "conv", "gmm", "vaegan"])
def test_stages_end_to_end(tmp_path, params_file, arch) -> None:
    ds = tmp_path / "data" / "dataset.npz"
    fashion_data.main(out=ds, summary=tmp_path / "s.json", params=params_file)
    assert json.loads((tmp_path / "s.json").read_text())["train"] == 512

    model = tmp_path / "data" / arch / "model.safetensors"
    state = tmp_path / "data" / arch / "resume.pt"
    fashion_train.main(
        arch=arch,
        data=ds,
        model_out=model,
        history=tmp_path / "h.json",
        state=state,
        params=params_file,
    )
    assert model.exists() and not state.exists()
    hist = json.loads((tmp_path / "h.json").read_text())
    # gmm and vaegan: their own fashion.model.<arch>.epochs
    assert len(hist) == (2 if arch in ("gmm", "vaegan") else 1)
    assert {"loss", "recon", "kl", "val_loss"} <= set(hist[0])
    if arch == "vaegan":  # the critic trains from its start epoch
        assert hist[0]["critic"] == 0 < hist[1]["critic"]

    clf = tmp_path / "data" / "classifier.safetensors"
    fashion_classifier.main(
        data=ds, model_out=clf, metrics=tmp_path / "c.json", params=params_file
    )
    assert json.loads((tmp_path / "c.json").read_text())["test_accuracy"] > 0.3

    metrics = tmp_path / "m.json"
    fashion_evaluate.main(
        data=ds,
        model=model,
        metrics=metrics,
        recon_grid=tmp_path / "r.png",
        gen_grid=tmp_path / "g.png",
        fid_weights=None,
        fid_ref=None,
        classifier=clf,
        info=tmp_path / "info.json",
        params=params_file,
    )
    m = json.loads(metrics.read_text())
    info = json.loads((tmp_path / "info.json").read_text())
    assert m["n"] == 256 and info["arch"] == arch and info["fid_recon"] is None
    assert "fid_recon" not in m and -1 <= m["ssim_valid"] <= 1
    assert 0 <= m["cond_accuracy"] <= 1 and len(m["cond_accuracy_per_class"]) == 10
    assert m["real_accuracy_per_class"].keys() == m["cond_accuracy_per_class"].keys()
    assert 0 <= m["cond_classes_below_real"] <= 10
    assert 0 < m["mse"] < 784 and -1 <= m["ssim"] <= 1
    assert Image.open(tmp_path / "g.png").size == (84 + 10 * 30 + 2, 10 * 30 + 2)

    # The CLI: same seed, same bytes; another seed, other images.
    runner = CliRunner()
    outs = []
    for seed in (0, 0, 1):
        out = tmp_path / f"gen{len(outs)}.png"
        r = runner.invoke(
            app,
            [
                "generate",
                "Make a dress",
                "--model",
                str(model),
                "--n",
                "4",
                "--seed",
                str(seed),
                "--out",
                str(out),
            ],
        )
        assert r.exit_code == 0, r.output
        assert "Dress" in r.output
        outs.append(out.read_bytes())
    assert outs[0] == outs[1] != outs[2]


def test_stage_errors_are_one_line(tmp_path, capsys) -> None:
    bad = write_params(
        tmp_path / "params.yaml", {"fashion": {"data": {"root": str(tmp_path / "x")}}}
    )
    with pytest.raises(SystemExit) as e:
        fashion_data.main(out=tmp_path / "d.npz", summary=None, params=bad)
    assert e.value.code == 1  # a missing dataset: a runtime error
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "apt-get" in err
    assert not (tmp_path / "d.npz").exists()


def test_cli_errors(tmp_path) -> None:
    runner = CliRunner()
    r = runner.invoke(app, ["generate", "a dress", "--model", "nope"])
    assert r.exit_code == 2 and "unknown model 'nope'" in r.output
    r = runner.invoke(
        app, ["generate", "a dress", "--model", str(tmp_path / "x.safetensors")]
    )
    assert r.exit_code == 1 and "not found: check the path" in r.output
