"""The adversarial training loop of vaegan: hinge critic, adaptive weight, resume."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import make_model, train_config, typed_params

from cvae.data import fashion
from cvae.data.batches import MemoryBatches
from cvae.models.prior import COV_JITTER
from cvae.training.adversarial import (
    AdversarialTrainer,
    PosteriorMoments,
    adaptive_weight,
    hard_wrong_labels,
    hinge_critic_loss,
    wrong_labels,
)

SMALL = {
    "channels": [8, 16, 32],
    "decoder_channels": [16, 8, 8],
    "latent_dim": 4,
    "components": 2,
}


def _adversarial(**updates):
    a = typed_params().fashion.model.vaegan.adversarial
    return a.model_copy(update={"channels": [8, 8, 16]} | updates)


def _train(tiny_fashion, tmp_path, epochs, **adv):
    d = fashion.load_dataset(tiny_fashion)
    x = torch.from_numpy(d["train_images"][:128]).unsqueeze(1)
    y = torch.from_numpy(d["train_labels"][:128])
    torch.manual_seed(0)
    cfg = train_config(epochs=epochs, batch_size=32, device="cpu", beta=0.02)
    t = AdversarialTrainer(
        make_model("vaegan", **SMALL),
        cfg,
        MemoryBatches(x, y, batch_size=32, seed=0),
        state_path=tmp_path / "s.pt",
        run_id="run",
        log=lambda s: None,
        adversarial=_adversarial(**adv),
    )
    return t, t.fit()


def test_hinge_loss_naive() -> None:
    real, fake = torch.tensor([2.0, 0.5, -1.0]), torch.tensor([-3.0, 0.0, 0.25])
    want = sum(max(0.0, 1 - r) for r in real.tolist()) + sum(
        max(0.0, 1 + f) for f in fake.tolist()
    )
    assert hinge_critic_loss(real, fake).item() == pytest.approx(want)


def test_adaptive_weight_is_the_gradient_norm_ratio() -> None:
    """For losses a * sum(W) and b * sum(W), the ratio of gradient norms is a / b."""
    layer = torch.nn.Linear(3, 2)
    recon = 6.0 * layer.weight.sum()
    adv = 2.0 * layer.weight.sum()
    assert adaptive_weight(recon, adv, layer).item() == pytest.approx(3.0, rel=1e-4)


def test_critic_joins_at_start_epoch_and_learns(tiny_fashion, tmp_path) -> None:
    _, hist = _train(tiny_fashion, tmp_path, 3, start_epoch=1)
    assert hist[0]["adv"] == 0 and hist[0]["critic"] == 0  # a plain VAE epoch
    assert hist[1]["critic"] > 0 and hist[2]["critic"] > 0
    # the critic's hinge loss starts at about 2 per image (scores near 0)
    assert hist[2]["critic"] < 2.0


def test_resume_restores_the_critic(tiny_fashion, tmp_path) -> None:
    full, hist_full = _train(tiny_fashion, tmp_path / "full", 3, start_epoch=1)
    _train(tiny_fashion, tmp_path / "cut", 2, start_epoch=1)
    resumed, hist = _train(tiny_fashion, tmp_path / "cut", 3, start_epoch=1)
    assert resumed.start_epoch == 2 and hist == hist_full
    for a, b in zip(
        full.critic.state_dict().values(), resumed.critic.state_dict().values()
    ):
        assert torch.equal(a, b)
    for a, b in zip(
        full.model.state_dict().values(), resumed.model.state_dict().values()
    ):
        assert torch.equal(a, b)


def test_a_state_of_other_adversarial_settings_is_ignored_by_name(
    tiny_fashion, tmp_path
) -> None:
    t, _ = _train(tiny_fashion, tmp_path, 1, start_epoch=0)
    lines = []
    t.log = lines.append
    t.adversarial = t.adversarial.model_copy(update={"weight": 0.25})
    t.run_id = "other"
    assert not t.try_resume()
    assert "adversarial.weight 0.5 -> 0.25" in lines[0]


def test_resume_cut_before_the_critic_joins(tiny_fashion, tmp_path) -> None:
    """Cut after a plain epoch (the critic's optimiser never stepped)."""
    _, hist_full = _train(tiny_fashion, tmp_path / "full", 3, start_epoch=2)
    _train(tiny_fashion, tmp_path / "cut", 1, start_epoch=2)
    resumed, hist = _train(tiny_fashion, tmp_path / "cut", 3, start_epoch=2)
    assert resumed.start_epoch == 1 and hist == hist_full
    assert hist[1]["critic"] == 0 < hist[2]["critic"]


def test_torchrun_is_refused_before_joining_a_group(
    tiny_fashion, tmp_path, monkeypatch
) -> None:
    from cvae.core.errors import CVAEError

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(CVAEError, match="without torchrun"):
        _train(tiny_fashion, tmp_path, 1)


def test_the_epoch_line_shows_the_adversarial_terms() -> None:
    from cvae.training.history import epoch_line

    row = {"epoch": 2, "loss": 3.0, "recon": 2.0, "kl": 50.0, "adv": 0.45}
    row |= {"critic": 1.5, "val_loss": 3.1, "val_recon": 2.1, "val_kl": 51.0}
    line = epoch_line(row, epochs=3, seconds=2.0, items=100)
    assert "kl 50.00  adv 0.45  critic 1.50  | val loss 3.10" in line


def test_posterior_moments_match_each_class_mean_and_covariance() -> None:
    """Sums over batches give each class's mean and (biased) covariance."""
    gen = torch.Generator().manual_seed(0)
    mu = torch.randn(60, 3, generator=gen) * torch.tensor([1.0, 2.0, 0.5]) + 1
    c = torch.arange(60) % 2
    moments = PosteriorMoments(2, 3, torch.device("cpu"))
    for sl in (slice(0, 25), slice(25, 60)):
        moments.add(mu[sl], c[sl])
    mean, chol = moments.gaussians()
    for k in range(2):
        rows = mu[c == k].double()
        want = torch.cov(rows.T, correction=0) + COV_JITTER * torch.eye(3)
        assert torch.allclose(mean[k].double(), rows.mean(0), atol=1e-6)
        assert torch.allclose((chol[k] @ chol[k].T).double(), want, atol=1e-5)


def test_posterior_moments_refuse_a_class_without_images() -> None:
    from cvae.core.errors import CVAEError

    moments = PosteriorMoments(3, 2, torch.device("cpu"))
    moments.add(torch.randn(4, 2), torch.tensor([0, 0, 1, 1]))
    with pytest.raises(CVAEError, match="class 2 had 0.*prior_samples: false"):
        moments.gaussians()


def test_posterior_moments_load_in_place_and_refuse_another_shape() -> None:
    a = PosteriorMoments(2, 3, torch.device("cpu"))
    a.add(torch.randn(6, 3), torch.tensor([0, 1, 0, 1, 0, 1]))
    b = PosteriorMoments(2, 3, torch.device("cpu"))
    own = b.sum
    b.load(a.state())
    assert b.sum is own and torch.equal(b.sum, a.sum)
    assert torch.equal(b.outer, a.outer) and torch.equal(b.count, a.count)
    with pytest.raises(RuntimeError):
        PosteriorMoments(2, 4, torch.device("cpu")).load(a.state())


def test_wrong_labels_are_other_classes_and_cover_them() -> None:
    torch.manual_seed(0)
    c = torch.arange(4).repeat(500)
    w = wrong_labels(c, 4)
    assert bool((w != c).all()) and int(w.min()) >= 0 and int(w.max()) <= 3
    for k in range(4):  # each other class drawn about a third of the time
        counts = torch.bincount(w[c == k], minlength=4).tolist()
        assert counts[k] == 0 and min(n for i, n in enumerate(counts) if i != k) > 120


def test_hard_wrong_labels_follow_the_scores_of_the_other_classes() -> None:
    """Never the true label; each other class k drawn with probability
    exp(s_k) / sum_{j != c} exp(s_j), checked against a naive reference."""
    scores = torch.tensor([[3.0, 0.0, 1.0, -2.0], [0.0, 0.0, 0.0, 0.0]])
    c = torch.tensor([0, 2])
    n = 20000
    torch.manual_seed(0)
    w = hard_wrong_labels(scores.repeat(n, 1), c.repeat(n)).view(n, 2)
    for row in range(2):
        assert bool((w[:, row] != c[row]).all())
        others = [k for k in range(4) if k != c[row]]
        z = sum(math.exp(scores[row, k]) for k in others)
        counts = torch.bincount(w[:, row], minlength=4)
        for k in others:
            want = math.exp(scores[row, k]) / z
            assert counts[k].item() / n == pytest.approx(want, abs=0.015)


def test_hard_mismatch_draws_from_the_critics_scores(tiny_fashion, tmp_path) -> None:
    """With ``mismatch: hard`` the wrong label comes from the critic's scores of
    every class: a critic sure of class 3 gives 3 wherever the label is not 3;
    ``uniform`` ignores the scores."""
    d = fashion.load_dataset(tiny_fashion)
    x = torch.from_numpy(d["train_images"][:64]).unsqueeze(1).float() / 255
    c = torch.from_numpy(d["train_labels"][:64]).long()
    scores = torch.full((64, 10), -30.0)
    scores[:, 3], scores[:, 5] = 30.0, 20.0  # 3 the most plausible, 5 second
    drawn = {}  # the wrong labels each option draws for x
    for option in ("hard", "uniform"):
        t = AdversarialTrainer(
            make_model("vaegan", **SMALL),
            train_config(epochs=2, batch_size=32, device="cpu"),
            MemoryBatches(x, c, batch_size=32, seed=0),
            state_path=tmp_path / f"{option}.pt",
            adversarial=_adversarial(mismatch=option),
        )
        t.critic.class_scores = lambda images: scores  # type: ignore[method-assign]
        drawn[option] = t._wrong_labels(x, c)
    hard, uniform = drawn["hard"], drawn["uniform"]
    assert bool((hard[c != 3] == 3).all()) and bool((hard[c == 3] == 5).all())
    assert bool((uniform != c).all()) and len(set(uniform.tolist())) > 2


def test_mismatch_needs_two_classes(tiny_fashion, tmp_path) -> None:
    from cvae.core.errors import CVAEError

    x = torch.zeros(8, 1, 28, 28, dtype=torch.uint8)
    with pytest.raises(CVAEError, match="mismatch needs 2 or more classes"):
        AdversarialTrainer(
            make_model("vaegan", **SMALL, num_classes=1),
            train_config(epochs=1, batch_size=4, device="cpu"),
            MemoryBatches(x, torch.zeros(8, dtype=torch.int64), batch_size=4, seed=0),
            state_path=tmp_path / "s.pt",
            adversarial=_adversarial(mismatch="uniform"),
        )


@pytest.mark.parametrize(
    ("option", "cut"),
    [
        ({"prior_samples": True}, 1),
        ({"prior_samples": True}, 2),
        ({"mismatch": "uniform"}, 2),
        ({"mismatch": "hard"}, 2),
    ],
)
def test_critic_options_change_training_and_resume_exactly(
    tiny_fashion, tmp_path, option, cut
) -> None:
    """Prior decodes (from the epoch after the first) or wrong-label real images
    reach the critic, which changes training; a run cut after the plain epoch or
    the first adversarial one resumes to the same weights."""
    _, plain = _train(tiny_fashion, tmp_path / "plain", 3, start_epoch=1)
    on = {"start_epoch": 1} | option
    full, hist_full = _train(tiny_fashion, tmp_path / "full", 3, **on)
    assert hist_full[0] == plain[0]  # the plain epoch is the same
    assert hist_full[1]["critic"] != plain[1]["critic"]
    _train(tiny_fashion, tmp_path / "cut", cut, **on)
    resumed, hist = _train(tiny_fashion, tmp_path / "cut", 3, **on)
    assert resumed.start_epoch == cut and hist == hist_full
    for a, b in zip(
        full.model.state_dict().values(), resumed.model.state_dict().values()
    ):
        assert torch.equal(a, b)
