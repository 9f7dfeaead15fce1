import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_model, model_config

from cvae.core.errors import CVAEError
from cvae.models import make_config
from cvae.training.losses import elbo_loss, kl_divergence

CASES = [
    ("fc", {}, (1, 28, 28), "label"),
    ("conv", {}, (1, 28, 28), "label"),
    (
        "image",
        {"image_size": 64, "base_channels": 8, "latent_dim": 16},
        (3, 64, 64),
        "vec",
    ),
    (
        "image",
        {"image_size": 128, "base_channels": 4, "latent_dim": 16},
        (3, 128, 128),
        "vec",
    ),
    (
        "image",
        {"image_size": 256, "base_channels": 8, "latent_dim": 16},
        (3, 256, 256),
        "vec",
    ),
]


def _cond(kind: str, b: int) -> torch.Tensor:
    return torch.arange(b) % 10 if kind == "label" else torch.randn(b, 512)


@pytest.mark.parametrize("conditioning", ["concat", "add"])
@pytest.mark.parametrize("arch, params, shape, kind", CASES)
def test_shapes_and_condition_use(arch, params, shape, kind, conditioning) -> None:
    torch.manual_seed(0)
    model = make_model(arch, **params, conditioning=conditioning).eval()
    x = torch.rand(4, *shape)
    c = _cond(kind, 4)
    logits, mu, logvar = model(x, c)
    assert logits.shape == x.shape
    assert mu.shape == logvar.shape == (4, model.latent_dim)
    z = torch.zeros(4, model.latent_dim)
    out = model.decode(z, c)
    assert out.shape == x.shape and 0 <= out.min() and out.max() <= 1
    # The condition changes the output: the decoder is really conditioned.
    other = model.decode(z, _cond(kind, 4).roll(1, 0) if kind == "label" else -c)
    assert (out - other).abs().max() > 0


def test_image_blocks_follow_the_paper() -> None:
    for size, n in [(64, 3), (128, 4), (256, 5)]:
        m = make_model("image", image_size=size, base_channels=4)
        convs = [x for x in m.encoder if isinstance(x, torch.nn.Conv2d)]
        deconvs = [x for x in m.decoder if isinstance(x, torch.nn.ConvTranspose2d)]
        bns = [x for x in m.decoder if isinstance(x, torch.nn.BatchNorm2d)]
        assert len(convs) == len(deconvs) == n and len(bns) == n - 1


def test_config_is_checked() -> None:
    """Checkpoint configs (complete dicts) are checked when a model is built."""
    with pytest.raises(CVAEError, match="unknown fc model param"):
        make_config("fc", model_config("fc", hidden=[1]))
    with pytest.raises(
        CVAEError, match=r"fc model param\(s\) \['latent_dim'\] missing"
    ):
        make_config(
            "fc", {k: v for k, v in model_config("fc").items() if k != "latent_dim"}
        )
    with pytest.raises(CVAEError, match="conditioning 'multiply'"):
        make_config("conv", model_config("conv", conditioning="multiply"))
    with pytest.raises(CVAEError, match="size 100 is not supported"):
        make_config("image", model_config("image", image_size=100))
    with pytest.raises(CVAEError, match="unknown arch"):
        make_config("transformer", {})
    cfg = make_config("fc", model_config("fc", latent_dim=7))
    assert dataclasses.asdict(cfg)["latent_dim"] == 7


def test_kl_matches_the_naive_formula() -> None:
    torch.manual_seed(0)
    mu, logvar = torch.randn(5, 3), torch.randn(5, 3)
    naive = 0.0
    for m, lv in zip(mu.flatten().tolist(), logvar.flatten().tolist()):
        var = torch.tensor(lv).exp().item()
        # KL(N(m, var) || N(0, 1)) = 1/2 (var + m^2 - 1 - log var)
        naive += 0.5 * (var + m * m - 1 - lv)
    assert kl_divergence(mu, logvar).item() == pytest.approx(naive, rel=1e-5)
    assert kl_divergence(torch.zeros(2, 4), torch.zeros(2, 4)).item() == 0


def test_elbo_terms() -> None:
    torch.manual_seed(0)
    x = torch.rand(3, 1, 4, 4)
    logits = torch.randn(3, 1, 4, 4)
    mu, logvar = torch.randn(3, 2), torch.randn(3, 2)
    p = torch.sigmoid(logits)
    bce = -(x * p.log() + (1 - x) * (1 - p).log()).sum()
    terms = elbo_loss(logits, x, mu, logvar, beta=0.5)
    assert terms["recon"].item() == pytest.approx(bce.item(), rel=1e-5)
    assert terms["loss"].item() == pytest.approx(
        terms["recon"].item() + 0.5 * terms["kl"].item(), rel=1e-6
    )
    mse = elbo_loss(logits, x, mu, logvar, recon="mse")["recon"]
    assert mse.item() == pytest.approx(((p - x) ** 2).sum().item(), rel=1e-5)


def _train_256(
    sample: Path, logvar_max: float | None, steps: int = 4
) -> list[dict[str, float]]:
    """A few Adam steps (lr 1e-3) of the 256 px model on real COCO photos."""
    from cvae.data.shards import center_crop_resize, load_rgb
    from cvae.models import build_model
    from cvae.training.losses import elbo_loss

    files = sorted((sample / "images").iterdir())[:4]
    x = (
        torch.stack(
            [
                torch.from_numpy(np.array(center_crop_resize(load_rgb(f), 256)))
                for f in files
            ]
        )
        .permute(0, 3, 1, 2)
        .float()
        / 255
    )
    torch.manual_seed(0)
    c = torch.randn(len(x), 64)
    cfg = dict(
        image_size=256,
        in_channels=3,
        base_channels=32,
        latent_dim=64,
        conditioning="concat",
        cond_dim=64,
        embed_dim=16,
        logvar_max=logvar_max,
    )
    model = build_model("image", cfg).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    out = []
    for _ in range(steps):
        logits, mu, logvar = model(x, c)
        terms = elbo_loss(logits, x, mu, logvar)
        opt.zero_grad()
        (terms["loss"] / len(x)).backward()
        opt.step()
        out.append({k: float(v.detach()) / len(x) for k, v in terms.items()})
        out[-1]["logvar_max"] = float(logvar.detach().max())
    return out


def test_256px_training_keeps_the_kl_bounded(coco_sample: Path) -> None:
    """Unbounded, one Adam step on 32,768-wide heads blows the KL up; with the
    log-variance bounded it stays finite and below the reconstruction term."""
    unbounded = _train_256(coco_sample, None)
    assert max(t["kl"] for t in unbounded) > 1e5  # the failure this guards against
    bounded = _train_256(coco_sample, 2.0)
    for t in bounded:
        assert all(math.isfinite(v) for v in t.values())
        assert t["logvar_max"] <= 2.0
        assert t["kl"] < 0.2 * t["recon"]
