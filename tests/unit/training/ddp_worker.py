"""Run by test_distributed.py beside it, alone or under torchrun (2 gloo ranks).

Trains the FC CVAE for one epoch on the tiny real Fashion-MNIST set and writes
each rank's final weights to OUT/rank{R}.pt. With ``--mean-z`` the latent is
z = mu (no sampling noise), so that a 2-rank run with batch B per rank and a
1-process run with batch 2B must take the same steps up to float rounding.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/: conftest
from conftest import make_model, train_config  # noqa: E402

from cvae.data import fashion
from cvae.data.batches import MemoryBatches
from cvae.models.base import ConditionalVAE
from cvae.training.trainer import Trainer


def main(data: str, out: str, batch_size: int, mean_z: bool) -> None:
    if mean_z:
        ConditionalVAE.reparameterize = staticmethod(  # type: ignore[method-assign]
            lambda mu, logvar, generator=None: mu
        )
    d = fashion.load_dataset(data)
    images = torch.from_numpy(d["train_images"]).unsqueeze(1)
    labels = torch.from_numpy(d["train_labels"])
    torch.manual_seed(0)
    model = make_model("fc", hidden_dims=[64, 32], latent_dim=8)
    cfg = train_config(epochs=1, batch_size=batch_size, device="cpu", lr=1e-3)
    data = MemoryBatches(images, labels, batch_size=batch_size, seed=cfg.seed)
    trainer = Trainer(model, cfg, data, state_path=Path(out) / "state.pt", log=print)
    hist = trainer.fit()
    rank = trainer.dist.rank
    torch.save(
        {"model": trainer.model.state_dict(), "history": hist},
        Path(out) / f"rank{rank}.pt",
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "mean-z")
