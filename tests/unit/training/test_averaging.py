"""The weight average a model can end its training with: against a naive EMA,
invisible to the steps, carried through a resume."""

from __future__ import annotations

import pytest
import torch
from conftest import make_model, train_config

from cvae.data import fashion
from cvae.data.batches import MemoryBatches
from cvae.training.averaging import WeightAverage
from cvae.training.trainer import Trainer


def test_average_matches_a_naive_ema() -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    avg = WeightAverage(model, 0.9)
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
            WeightAverage(torch.nn.Linear(1, 1), bad)
    with pytest.raises(RuntimeError, match="no step"):
        WeightAverage(torch.nn.Linear(1, 1), 0.5).copy_to(torch.nn.Linear(1, 1))


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
    averaged = _train(tiny_fashion, tmp_path / "ema.pt", 2, 0.9)
    trained = torch.load(tmp_path / "ema.pt", weights_only=True)["model"]
    for k, v in plain.model.state_dict().items():
        assert torch.equal(trained[k], v), k  # the same trajectory, bit for bit
    assert averaged.average.steps == 12  # 2 epochs of 6 steps
    assert not torch.equal(averaged.model.fc_mu.weight, plain.model.fc_mu.weight)


def test_resume_continues_the_average(tiny_fashion, tmp_path) -> None:
    full = _train(tiny_fashion, tmp_path / "full.pt", 3, 0.9)
    _train(tiny_fashion, tmp_path / "cut.pt", 2, 0.9)
    resumed = _train(tiny_fashion, tmp_path / "cut.pt", 3, 0.9)
    assert resumed.start_epoch == 2
    for (k, a), b in zip(
        full.model.state_dict().items(), resumed.model.state_dict().values()
    ):
        assert torch.equal(a, b), k
