"""The gmm model: a conv CVAE sampled from a fitted per-class prior."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import drop_config_keys, make_model

from cvae.core.errors import CVAEError
from cvae.data.fashion import load_dataset
from cvae.models import make_config
from cvae.models.checkpoint import load_model, save_model
from cvae.models.prior import ClassGMMPrior

SMALL = {"channels": [8, 16, 32], "latent_dim": 4, "components": 2}


def _fitted(tiny_fashion) -> torch.nn.Module:
    torch.manual_seed(0)
    model = make_model("gmm", **SMALL).eval()
    d = load_dataset(tiny_fashion)
    images = torch.from_numpy(d["train_images"]).unsqueeze(1)  # (512, 1, 28, 28)
    labels = torch.from_numpy(d["train_labels"])
    model.fit_prior(images, labels, batch_size=128, seed=0)
    return model


def test_prior_matches_the_data_it_was_fitted_to() -> None:
    """One component per class: its samples' mean and covariance are the class's."""
    gen = torch.Generator().manual_seed(0)
    n, d = 4000, 3
    labels = torch.arange(2).repeat_interleave(n)
    a = torch.randn(n, d, generator=gen) @ torch.tensor(
        [[2.0, 0, 0], [0.5, 1, 0], [0, -0.3, 0.2]]
    ) + torch.tensor([5.0, -1, 0])
    b = torch.randn(n, d, generator=gen) * 0.1 - 3
    prior = ClassGMMPrior(num_classes=2, components=1, latent_dim=d)
    prior.fit(torch.cat([a, b]), labels, seed=0)
    for c, data in enumerate((a, b)):
        z = prior.sample(
            torch.full((20_000,), c), torch.Generator().manual_seed(1), temperature=1.0
        )
        assert z.shape == (20_000, d)
        want_mean, want_cov = data.mean(0), torch.cov(data.T)
        assert torch.allclose(prior.means[c, 0], want_mean, atol=1e-4)
        assert torch.allclose(z.mean(0), want_mean, atol=0.05)
        assert torch.allclose(torch.cov(z.T), want_cov, atol=0.1 * want_cov.abs().max())


def test_temperature_scales_the_spread_around_the_same_component() -> None:
    """z = mean + t * L eps: the same draws at t = 1 and t = 0.5 lie on one ray
    from the component mean, at half the distance; t -> the sample's spread."""
    prior = ClassGMMPrior(num_classes=1, components=2, latent_dim=3)
    gen = torch.Generator().manual_seed(0)
    z = torch.cat([torch.randn(500, 3, generator=gen) + 6, torch.randn(500, 3) - 6])
    prior.fit(z, torch.zeros(1000, dtype=torch.long), seed=0)
    c = torch.zeros(4000, dtype=torch.long)
    full = prior.sample(c, torch.Generator().manual_seed(2), temperature=1.0)
    half = prior.sample(c, torch.Generator().manual_seed(2), temperature=0.5)
    near = (full.unsqueeze(1) - prior.means[0]).norm(dim=2).argmin(1)  # (B,)
    mean = prior.means[0][near]
    assert torch.allclose(half - mean, 0.5 * (full - mean), atol=1e-5)
    spread_full = (full - mean).pow(2).sum(1).mean()
    spread_half = (half - mean).pow(2).sum(1).mean()
    assert spread_half / spread_full == pytest.approx(0.25, rel=1e-4)


def test_prior_mixture_weights_and_modes() -> None:
    """Two well-separated clusters in one class: two components, the right weights."""
    gen = torch.Generator().manual_seed(0)
    z = torch.cat([torch.randn(3000, 2, generator=gen) + 10, torch.randn(1000, 2) - 10])
    prior = ClassGMMPrior(num_classes=1, components=2, latent_dim=2)
    prior.fit(z, torch.zeros(4000, dtype=torch.long), seed=0)
    assert np.allclose(prior.weights[0].numpy(), [0.75, 0.25], atol=1e-3)
    s = prior.sample(torch.zeros(10_000, dtype=torch.long), gen, temperature=1.0)
    assert abs((s[:, 0] > 0).float().mean().item() - 0.75) < 0.02


def test_unfitted_prior_and_bad_input_are_errors() -> None:
    prior = ClassGMMPrior(num_classes=2, components=3, latent_dim=2)
    with pytest.raises(CVAEError, match="never fitted"):
        prior.sample(torch.zeros(2, dtype=torch.long), temperature=1.0)
    with pytest.raises(CVAEError, match="too few"):
        prior.fit(torch.randn(4, 2), torch.tensor([0, 0, 1, 1]), seed=0)
    with pytest.raises(CVAEError, match=r"z \(N, 2\)"):
        prior.fit(torch.randn(4, 3), torch.zeros(4, dtype=torch.long), seed=0)
    with pytest.raises(CVAEError, match="components must be >= 1"):
        make_config(
            "gmm", make_model("gmm", **SMALL).config.__dict__ | {"components": 0}
        )


def test_conditioned_seeded_and_saved_with_its_prior(tiny_fashion, tmp_path) -> None:
    model = _fitted(tiny_fashion)
    assert model.prior.is_fitted
    c = torch.arange(10)
    x1 = model.sample(c, torch.Generator().manual_seed(3))
    x2 = model.sample(c, torch.Generator().manual_seed(3))
    x3 = model.sample(c, torch.Generator().manual_seed(4))
    assert x1.shape == (10, 1, 28, 28) and 0 <= x1.min() and x1.max() <= 1
    assert torch.equal(x1, x2) and not torch.equal(x1, x3)
    # Each class samples near its own fitted means (the prior is per class).
    z = model.prior.sample(
        torch.full((500,), 1), torch.Generator().manual_seed(0), temperature=1.0
    )
    own = (z.mean(0) - model.prior.means[1].T @ model.prior.weights[1]).norm()
    other = (z.mean(0) - model.prior.means[7].T @ model.prior.weights[7]).norm()
    assert own < other

    path = tmp_path / "gmm.safetensors"
    save_model(path, model, "gmm", {"condition": "label"})
    loaded, meta = load_model(path, expect_arch=("fc", "conv", "gmm"))
    assert meta["config"]["components"] == 2 and loaded.prior.is_fitted
    for name in ("weights", "means", "scale_tril"):
        assert torch.equal(getattr(loaded.prior, name), getattr(model.prior, name))
    assert torch.equal(loaded.sample(c, torch.Generator().manual_seed(3)), x1)


def test_conv_weights_load_into_gmm() -> None:
    """The gmm net is the conv net: the paper's conv weights fit it (the ablation
    fits a prior to them)."""
    conv = make_model("conv", channels=[8, 16, 32], latent_dim=4)
    gmm = make_model("gmm", **SMALL)
    missing, unexpected = gmm.load_state_dict(conv.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("prior.") for k in missing)


def test_a_file_from_before_the_temperature_samples_at_one(
    tiny_fashion, tmp_path
) -> None:
    model = _fitted(tiny_fashion)
    path = tmp_path / "gmm.safetensors"
    save_model(path, model, "gmm", {"condition": "label"})
    drop_config_keys(path, {"temperature"})
    loaded, meta = load_model(path)
    assert "temperature" not in meta["config"] and loaded.config.temperature == 1.0
    c = torch.arange(10)
    assert torch.equal(
        loaded.sample(c, torch.Generator().manual_seed(3)),
        model.sample(c, torch.Generator().manual_seed(3)),
    )
