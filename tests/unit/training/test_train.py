import json
import math

import pytest
import torch
from conftest import make_model, train_config

from cvae.core.device import resolve_device
from cvae.core.errors import CVAEError
from cvae.data import fashion
from cvae.data.batches import MemoryBatches
from cvae.training.trainer import Trainer


def _data(tiny_fashion, n=256):
    d = fashion.load_dataset(tiny_fashion)
    x = torch.from_numpy(d["train_images"][:n]).unsqueeze(1)
    y = torch.from_numpy(d["train_labels"][:n])
    return x, y


def _train(tiny_fashion, tmp_path, epochs, name="s.pt", **kw):
    x, y = _data(tiny_fashion)
    torch.manual_seed(0)
    model = make_model("fc", hidden_dims=[64, 32], latent_dim=8)
    cfg = train_config(epochs=epochs, batch_size=32, device="cpu", **kw)
    t = Trainer(
        model,
        cfg,
        MemoryBatches(x, y, batch_size=cfg.batch_size, seed=cfg.seed),
        state_path=tmp_path / name,
        history_path=tmp_path / "h.json",
        run_id="run",
        log=lambda s: None,
    )
    return t, t.fit()


def test_loss_goes_down_on_real_data(tiny_fashion, tmp_path) -> None:
    _, hist = _train(tiny_fashion, tmp_path, 3)
    assert hist[-1]["loss"] < hist[0]["loss"]
    assert json.loads((tmp_path / "h.json").read_text()) == hist


def test_same_seed_same_weights(tiny_fashion, tmp_path) -> None:
    a, _ = _train(tiny_fashion, tmp_path / "a", 2)
    b, _ = _train(tiny_fashion, tmp_path / "b", 2)
    for (k, va), vb in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(va, vb), k


def test_resume_equals_uninterrupted(tiny_fashion, tmp_path) -> None:
    full, hist_full = _train(tiny_fashion, tmp_path / "full", 3)
    # A run stopped after epoch 2 leaves its state; a new run continues it.
    _train(tiny_fashion, tmp_path / "cut", 2)
    resumed, hist = _train(tiny_fashion, tmp_path / "cut", 3)
    assert resumed.start_epoch == 2 and len(hist) == 3
    for va, vb in zip(
        full.model.state_dict().values(), resumed.model.state_dict().values()
    ):
        assert torch.equal(va, vb)
    assert hist[-1]["loss"] == hist_full[-1]["loss"]


def test_state_of_another_run_is_ignored(tiny_fashion, tmp_path) -> None:
    t, _ = _train(tiny_fashion, tmp_path, 1)
    t.run_id = "other"
    assert not t.try_resume()


def test_nan_stops_with_the_step_and_keeps_the_last_state(
    tiny_fashion, tmp_path
) -> None:
    x, y = _data(tiny_fashion)
    torch.manual_seed(0)
    model = make_model("fc", hidden_dims=[64, 32], latent_dim=8)
    state = tmp_path / "s.pt"
    Trainer(
        model,
        train_config(epochs=1, batch_size=32, device="cpu"),
        MemoryBatches(x, y, batch_size=32, seed=0),
        state_path=state,
        run_id="r",
        log=lambda s: None,
    ).fit()
    saved = state.read_bytes()
    with torch.no_grad():
        model.fc_mu.weight[0, 0] = math.nan  # poison the weights
    t = Trainer(
        model,
        train_config(epochs=2, batch_size=32, device="cpu"),
        MemoryBatches(x, y, batch_size=32, seed=0),
        state_path=state,
        run_id="r2",
        log=lambda s: None,
    )
    with pytest.raises(CVAEError, match=r"non-finite loss \(nan\) at epoch 1 step 1"):
        t.fit()
    assert state.read_bytes() == saved


def test_device() -> None:
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == (
        "cuda" if torch.cuda.is_available() else "cpu"
    )
    if not torch.cuda.is_available():
        with pytest.raises(CVAEError, match="no CUDA GPU"):
            resolve_device("cuda")
