"""Latent t-SNE of VAE vs CVAE: library pieces and the stage on tiny real data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import make_model, write_params
from PIL import Image

from cvae.core.errors import CVAEError
from cvae.evaluation.tsne import latent_means, plot_embeddings, silhouette, tsne_2d
from cvae.models.checkpoint import save_model
from stages import fashion_tsne

SMALL_CONV = {"channels": [8, 16, 32], "latent_dim": 8, "embed_dim": 4}


def test_latent_means_are_batched_encoder_means() -> None:
    torch.manual_seed(0)
    model = make_model("conv", **SMALL_CONV)
    images = torch.randint(0, 256, (23, 1, 28, 28), dtype=torch.uint8)
    labels = torch.randint(0, 10, (23,))
    z = latent_means(model, images, labels, batch_size=5)
    assert z.shape == (23, 8) and z.dtype == np.float32
    with torch.no_grad():
        mu, _ = model.encode(images.float() / 255, labels)
    np.testing.assert_allclose(z, mu.numpy(), rtol=1e-5, atol=1e-6)
    assert model.training  # left as it was found
    with pytest.raises(CVAEError, match="conditions"):
        latent_means(model, images, labels[:3])


def _clusters(rng: np.random.Generator, spread: float) -> tuple[np.ndarray, ...]:
    """60 points in 3 classes: centres 10 apart, Gaussian noise of ``spread``."""
    labels = np.repeat(np.arange(3), 20)
    centres = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [0.0, 10.0, 0.0]])
    return centres[labels] + spread * rng.standard_normal((60, 3)), labels


def test_silhouette_separated_clusters_beat_random_points() -> None:
    rng = np.random.default_rng(0)
    points, labels = _clusters(rng, spread=0.5)
    random_points = rng.standard_normal((60, 3))
    assert silhouette(points, labels) > 0.8
    assert silhouette(points, labels) > silhouette(random_points, labels)
    assert abs(silhouette(random_points, labels)) < 0.2
    with pytest.raises(CVAEError, match="two classes"):
        silhouette(points, np.zeros(60))


def test_tsne_is_seeded_and_keeps_clusters() -> None:
    points, labels = _clusters(np.random.default_rng(1), spread=0.5)
    a = tsne_2d(points, seed=0, perplexity=10)
    assert a.shape == (60, 2)
    np.testing.assert_array_equal(a, tsne_2d(points, seed=0, perplexity=10))
    assert silhouette(a, labels) > 0.5
    with pytest.raises(CVAEError, match="perplexity"):
        tsne_2d(points, seed=0, perplexity=60)


def test_plot_embeddings(tmp_path) -> None:
    rng = np.random.default_rng(0)
    labels = np.arange(40) % 10
    panels = [("VAE", rng.standard_normal((40, 2))), ("CVAE", rng.random((40, 2)))]
    path = tmp_path / "plots" / "tsne.png"
    plot_embeddings(panels, labels, path, panel_size=3)
    first = path.read_bytes()
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (round((2 * 3 + 2.2) * 100), 300)
    plot_embeddings(panels, labels, path, panel_size=3)
    assert path.read_bytes() == first  # same embeddings, same bytes
    assert [p.name for p in path.parent.iterdir()] == ["tsne.png"]  # no temp left
    with pytest.raises(CVAEError, match="not \\(40, 2\\)"):
        plot_embeddings([("x", np.zeros((39, 2)))], labels, tmp_path / "bad.png")


def _params(tmp_path, **tsne) -> object:
    section = {"n_points": 200, "vae_epochs": 1, "seed": 0, "perplexity": 30}
    section |= {"device": "cpu"} | tsne
    train = {"batch_size": 64, "device": "cpu"}
    fashion = {"tsne": section, "train": train}
    return write_params(tmp_path / "params.yaml", {"fashion": fashion})


def test_stage_end_to_end(tmp_path, tiny_fashion) -> None:
    torch.manual_seed(0)
    model = tmp_path / "conv" / "model.safetensors"
    save_model(model, make_model("conv", **SMALL_CONV), "conv", {"epochs": 0})
    plot, metrics = tmp_path / "plots" / "tsne.png", tmp_path / "m" / "tsne.json"
    fashion_tsne.main(
        data=tiny_fashion,
        model=model,
        plot=plot,
        metrics=metrics,
        params=_params(tmp_path),
    )
    m = json.loads(metrics.read_text())
    assert m["n_points"] == 200 and m["perplexity"] == 30 and m["seed"] == 0
    assert m["vae"]["epochs"] == 1 and np.isfinite(m["vae"]["final_loss"])
    assert m["cvae"]["epochs"] == 0
    for name in ("vae", "cvae"):
        for key in ("silhouette_tsne", "silhouette_latent"):
            assert -1 <= m[name][key] <= 1
    with Image.open(plot) as im:
        assert im.format == "PNG" and im.size == (1220, 500)


def test_stage_refuses_a_non_conv_model(tmp_path, tiny_fashion, capsys) -> None:
    model = tmp_path / "fc.safetensors"
    save_model(model, make_model("fc", hidden_dims=[16], latent_dim=4), "fc")
    with pytest.raises(SystemExit) as e:
        fashion_tsne.main(
            data=tiny_fashion,
            model=model,
            plot=tmp_path / "p.png",
            metrics=tmp_path / "m.json",
            params=_params(tmp_path),
        )
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "expected 'conv'" in err
    assert not (tmp_path / "p.png").exists()
