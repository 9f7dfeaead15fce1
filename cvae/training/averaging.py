"""An exponential moving average of a model's weights over its training steps.

Adversarial training does not settle on one set of weights: the decoder and the
critic chase each other, and the weights of the last step are one point of that
orbit. Their running average is a better generator than any one of them
(Yazıcı et al., "The Unusual Effectiveness of Averaging in GAN Training", ICLR
2019), at no cost to the training itself, which never sees the average:

    W_avg <- W_1                                     after the first step
    W_avg <- decay * W_avg + (1 - decay) * W_t       after every later step t

so a step's weights fade with a horizon of about 1 / (1 - decay) steps.
PyTorch's ``AveragedModel`` with its EMA update holds the average; buffers are
not averaged but follow the model's.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


class WeightAverage:
    """The EMA of ``model``'s parameters (a copy on the model's device)."""

    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0 < decay < 1:
            raise ValueError(f"the average's decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.average = AveragedModel(
            model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=False
        )

    def update(self, model: torch.nn.Module) -> None:
        """Fold in ``model``'s weights after a step."""
        self.average.update_parameters(model)

    @property
    def steps(self) -> int:
        """Steps folded in so far."""
        return int(self.average.n_averaged)

    @torch.no_grad()
    def copy_to(self, model: torch.nn.Module) -> None:
        """Give ``model`` the averaged weights (in place; buffers untouched)."""
        if self.steps == 0:
            raise RuntimeError("no step has been averaged yet")
        for mine, theirs in zip(
            self.average.module.parameters(), model.parameters(), strict=True
        ):
            theirs.copy_(mine)

    def state(self) -> dict[str, Any]:
        """The average and its step count, for a resume state."""
        return self.average.state_dict()

    def load(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state` (RuntimeError when it is another model's)."""
        self.average.load_state_dict(state)
