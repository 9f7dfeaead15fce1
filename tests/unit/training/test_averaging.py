"""The weight average a model can end its training with: against a naive EMA,
invisible to the steps, carried through a resume."""

from __future__ import annotations

import pytest
import torch
from conftest import make_model, train_config, typed_params

from cvae.core.errors import CVAEError
from cvae.data import fashion
from cvae.data.batches import MemoryBatches
from cvae.models.checkpoint import load_model
from cvae.training.averaging import WeightAverage, check_decay, first_step_share
from cvae.training.fashion import train_fashion
from cvae.training.trainer import Trainer


def test_average_matches_a_naive_ema() -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    avg = WeightAverage(model, decay=0.9)
    seen = []
    for _ in range(5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        seen.append([p.detach().double().clone() for p in model.parameters()])
        avg.update(model)
    want = seen[0]  # the first step is copied, later ones folded in
    for later in seen[1:]:
        want = [0.9 * w + 0.1 * x for w, x in zip(want, later, strict=True)]
    out = torch.nn.Linear(3, 2)
    avg.copy_to(out)
    assert avg.steps == 5
    for got, w in zip(out.parameters(), want, strict=True):
        torch.testing.assert_close(got.double(), w, rtol=0, atol=1e-6)


def test_decay_outside_the_open_unit_interval_is_refused() -> None:
    for bad in (0.0, 1.0, -0.5):
        with pytest.raises(ValueError, match="decay must be in"):
            WeightAverage(torch.nn.Linear(1, 1), decay=bad)
    with pytest.raises(RuntimeError, match="no step"):
        WeightAverage(torch.nn.Linear(1, 1), decay=0.5).copy_to(torch.nn.Linear(1, 1))


def test_a_decay_too_slow_for_the_run_is_refused_naming_the_largest() -> None:
    assert first_step_share(0.999, 1407) == pytest.approx(0.999**1406)
    check_decay(0.999, 7035)  # the first step keeps 0.09%
    with pytest.raises(
        CVAEError, match=r"leaves 24% .* 1,407 steps: lower ema to"
    ) as e:
        check_decay(0.999, 1407)
    most = float(str(e.value).split("at most ")[1].split()[0])
    check_decay(most, 1407)  # the decay it names is accepted
    assert first_step_share(most + 1e-4, 1407) > 0.01


def _train(tiny_fashion, path, epochs, ema):
    d = fashion.load_dataset(tiny_fashion)
    x = torch.from_numpy(d["train_images"][:192]).unsqueeze(1)
    y = torch.from_numpy(d["train_labels"][:192])
    torch.manual_seed(0)
    t = Trainer(
        make_model("fc", hidden_dims=[32, 16], latent_dim=4),
        train_config(epochs=epochs, batch_size=32, device="cpu"),
        MemoryBatches(x, y, batch_size=32, seed=0),
        state_path=path,
        run_id="run",
        log=lambda s: None,
        ema=ema,
    )
    t.fit()
    return t


def test_the_steps_never_see_the_average(tiny_fashion, tmp_path) -> None:
    plain = _train(tiny_fashion, tmp_path / "plain.pt", 2, None)
    averaged = _train(tiny_fashion, tmp_path / "ema.pt", 2, 0.6)
    trained = torch.load(tmp_path / "ema.pt", weights_only=True)["model"]
    for k, v in plain.model.state_dict().items():
        assert torch.equal(trained[k], v), k  # the same trajectory, bit for bit
    assert averaged.average.steps == 12  # 2 epochs of 6 steps
    assert not torch.equal(averaged.model.fc_mu.weight, plain.model.fc_mu.weight)


def test_resume_continues_the_average(tiny_fashion, tmp_path) -> None:
    full = _train(tiny_fashion, tmp_path / "full.pt", 3, 0.6)
    _train(tiny_fashion, tmp_path / "cut.pt", 2, 0.6)
    resumed = _train(tiny_fashion, tmp_path / "cut.pt", 3, 0.6)
    assert resumed.start_epoch == 2
    for (k, a), b in zip(
        full.model.state_dict().items(),
        resumed.model.state_dict().values(),
        strict=True,
    ):
        assert torch.equal(a, b), k


def test_a_state_without_the_average_is_refused_in_one_line(
    tiny_fashion, tmp_path
) -> None:
    _train(tiny_fashion, tmp_path / "s.pt", 1, None)
    with pytest.raises(CVAEError, match=r"does not fit .*no weight average \(ema\)"):
        _train(tiny_fashion, tmp_path / "s.pt", 2, 0.6)


@pytest.mark.parametrize("ema", [0.0, 0.5])
def test_the_vaegan_file_holds_the_average(tiny_fashion, tmp_path, ema) -> None:
    small = {
        "channels": [8, 16, 32],
        "decoder_channels": [16, 8, 8],
        "latent_dim": 4,
        "components": 1,
        "epochs": 2,
        "ema": ema,
        "adversarial": {"start_epoch": 1, "channels": [8, 8, 16]},
    }
    fashion_params = typed_params(
        {
            "fashion": {
                "train": {"batch_size": 128, "device": "cpu"},
                "model": {"vaegan": small},
            }
        }
    ).fashion
    out, state = tmp_path / "m.safetensors", tmp_path / "s.pt"
    train_fashion(
        "vaegan", fashion_params, tiny_fashion, out, tmp_path / "h.json", state
    )
    model, meta = load_model(out)
    info = meta["info"]
    saved = torch.load(state, weights_only=True)
    trained = [saved["model"][k] for k, _ in model.named_parameters()]
    if ema:  # 2 epochs of 4 steps averaged; the prior fitted to the average
        assert info["ema"] == ema and saved["weight_average"]["steps"] == 8
        for p, a in zip(
            model.parameters(), saved["weight_average"]["params"], strict=True
        ):
            assert torch.equal(p, a)
        assert not torch.equal(model.fc_mu.weight, saved["model"]["fc_mu.weight"])
    else:  # off: the run is the one without the option
        assert "ema" not in info and "weight_average" not in saved
        assert all(
            torch.equal(p, t) for p, t in zip(model.parameters(), trained, strict=True)
        )
    assert bool(model.prior.fitted)
