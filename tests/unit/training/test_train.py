import json
import math
import re

import pytest
import torch
from conftest import make_model, train_config

from cvae.core.device import resolve_device
from cvae.core.errors import CVAEError
from cvae.core.progress import number
from cvae.data import fashion
from cvae.data.batches import MemoryBatches, MemorySplit
from cvae.training.history import epoch_line, summary
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


ROW = {"epoch": 3, "loss": 244.7912, "recon": 232.0411, "kl": 12.7501}
VAL = {"val_loss": 244.8803, "val_recon": 232.1, "val_kl": 0.0123456}


def test_an_epoch_and_a_run_read_as_text() -> None:
    assert epoch_line(ROW | VAL, epochs=25, seconds=163.24, items=42_600) == (
        "epoch 3/25  loss 244.79  recon 232.04  kl 12.75  "
        "| val loss 244.88  recon 232.10  kl 0.01235  | 163.2 s, 261 img/s"
    )
    ranks = ROW | {"world_size": 2}
    assert epoch_line(ranks, epochs=3, seconds=2.0, items=512) == (
        "epoch 3/3  loss 244.79  recon 232.04  kl 12.75  | 2.0 s, 256 img/s on 2 ranks"
    )
    assert summary([ROW, ROW | VAL]) == (
        "2 epochs, val loss 244.88 (recon 232.10, kl 0.01235)"
    )
    assert summary([ROW]) == "1 epoch, loss 244.79 (recon 232.04, kl 12.75)"
    assert summary([]) == "0 epochs"


def test_epochs_print_for_people_and_the_history_keeps_every_digit(
    tiny_fashion, tmp_path, monkeypatch
) -> None:
    """On a terminal a bar moves within each epoch (stderr); each finished
    epoch is one rounded line; the history file holds the exact numbers."""
    import io

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stderr = Terminal()
    monkeypatch.setattr("sys.stderr", stderr)
    x, y = _data(tiny_fashion)
    torch.manual_seed(0)
    cfg = train_config(epochs=2, batch_size=32, device="cpu")
    lines: list[str] = []
    hist = Trainer(
        make_model("fc", hidden_dims=[64, 32], latent_dim=8),
        cfg,
        MemoryBatches(x, y, batch_size=cfg.batch_size, seed=cfg.seed),
        state_path=tmp_path / "s.pt",
        history_path=tmp_path / "h.json",
        val=MemorySplit(x[:64], y[:64]),
        log=lines.append,
    ).fit()
    assert "epoch 1/2" in stderr.getvalue() and "epoch 2/2" in stderr.getvalue()
    assert "validation" in stderr.getvalue()
    assert len(lines) == 2
    for line, row in zip(lines, hist, strict=True):
        assert line.startswith(f"epoch {row['epoch']}/2  loss {number(row['loss'])}  ")
        assert f"| val loss {number(row['val_loss'])}  " in line
        assert re.search(r"  \| \d+\.\d s, \d+ img/s$", line)
    assert json.loads((tmp_path / "h.json").read_text()) == hist  # every digit
