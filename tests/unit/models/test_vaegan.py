"""The vaegan model (residual decoder, fitted prior) and its critic."""

from __future__ import annotations

import pytest
import torch
from conftest import make_model

from cvae.data.fashion import load_dataset
from cvae.models.checkpoint import load_model, save_model
from cvae.models.discriminator import DiscriminatorConfig, ProjectionDiscriminator

SMALL = {
    "channels": [8, 16, 32],
    "decoder_channels": [16, 8, 8],
    "latent_dim": 4,
    "components": 2,
}


def test_shapes_and_the_output_layer() -> None:
    torch.manual_seed(0)
    model = make_model("vaegan", **SMALL)
    x, c = torch.rand(5, 1, 28, 28), torch.arange(5)
    logits, mu, logvar = model(x, c)
    assert logits.shape == (5, 1, 28, 28) and mu.shape == logvar.shape == (5, 4)
    assert model.output_layer is model.decoder[-1]
    assert model.output_layer.out_channels == 1


def test_residual_block_is_identity_plus_its_branch() -> None:
    from cvae.models.vaegan import ResidualBlock

    torch.manual_seed(0)
    block = ResidualBlock(3)
    x = torch.randn(2, 3, 7, 7)
    silu = torch.nn.functional.silu
    branch = block.conv2(silu(block.conv1(silu(x))))
    assert torch.allclose(block(x), x + branch)
    torch.nn.init.zeros_(block.conv2.weight)
    torch.nn.init.zeros_(block.conv2.bias)
    assert torch.equal(block(x), x)


def test_fitted_seeded_and_saved_with_its_prior(tiny_fashion, tmp_path) -> None:
    torch.manual_seed(0)
    model = make_model("vaegan", **SMALL).eval()
    d = load_dataset(tiny_fashion)
    images = torch.from_numpy(d["train_images"]).unsqueeze(1)
    labels = torch.from_numpy(d["train_labels"])
    model.fit_prior(images, labels, batch_size=128, seed=0)
    c = torch.arange(10)
    x1 = model.sample(c, torch.Generator().manual_seed(3))
    assert x1.shape == (10, 1, 28, 28) and 0 <= x1.min() and x1.max() <= 1
    assert torch.equal(x1, model.sample(c, torch.Generator().manual_seed(3)))
    path = tmp_path / "vaegan.safetensors"
    save_model(path, model, "vaegan", {"condition": "label"})
    loaded, meta = load_model(path)
    assert meta["arch"] == "vaegan" and meta["config"]["decoder_channels"] == [16, 8, 8]
    assert torch.equal(loaded.sample(c, torch.Generator().manual_seed(3)), x1)


def test_critic_scores_depend_on_the_label() -> None:
    """The projection term: the same image scores differently under two labels,
    and D(x, c) = w . phi(x) + embed(c) . phi(x)."""
    torch.manual_seed(0)
    cfg = DiscriminatorConfig(
        image_size=28, in_channels=1, channels=[8, 16, 32], num_classes=10
    )
    critic = ProjectionDiscriminator(cfg).eval()
    x = torch.rand(4, 1, 28, 28)
    a, b = (
        critic(x, torch.zeros(4, dtype=torch.long)),
        critic(x, torch.ones(4, dtype=torch.long)),
    )
    assert a.shape == (4,) and not torch.allclose(a, b)
    h = critic.features(x * 2 - 1)
    c = torch.tensor([0, 1, 2, 3])
    want = critic.score(h).squeeze(1) + (critic.embed(c) * h).sum(1)
    assert torch.allclose(critic(x, c), want)


def test_class_scores_are_the_critic_under_every_label() -> None:
    """class_scores(x)[:, k] = D(x, k) for every class k, from one feature pass."""
    torch.manual_seed(0)
    cfg = DiscriminatorConfig(
        image_size=28, in_channels=1, channels=[8, 16, 32], num_classes=10
    )
    critic = ProjectionDiscriminator(cfg).eval()
    x = torch.rand(5, 1, 28, 28)
    scores = critic.class_scores(x)
    assert scores.shape == (5, 10)
    for k in range(10):
        want = critic(x, torch.full((5,), k, dtype=torch.long))
        assert torch.allclose(scores[:, k], want, atol=1e-6)


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="3 widths"):
        make_model("vaegan", **SMALL | {"decoder_channels": [8, 8]})
    with pytest.raises(ValueError, match="28x28"):
        ProjectionDiscriminator(
            DiscriminatorConfig(
                image_size=32, in_channels=1, channels=[8, 16, 32], num_classes=10
            )
        )
