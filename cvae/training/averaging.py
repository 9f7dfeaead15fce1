"""An exponential moving average of a model's weights over its training steps.

Adversarial training does not settle on one set of weights: the decoder and the
critic chase each other, and the weights of the last step are one point of that
orbit. Their running average is a better generator than any one of them
(Yazıcı et al., "The Unusual Effectiveness of Averaging in GAN Training", ICLR
2019), at no cost to the training itself, which never sees the average:

    W_avg <- W_1                                     after the first step
    W_avg <- decay * W_avg + (1 - decay) * W_t       after every later step t

so a step's weights fade with a horizon of about 1 / (1 - decay) steps, and the
first step's weights keep a share decay^(n - 1) of the average after n steps
(:func:`first_step_share`). The update is PyTorch's own EMA update
(``torch.optim.swa_utils.get_ema_multi_avg_fn``: one ``lerp`` over every
parameter), held here with a Python step count and without copies of the
model's buffers, so that on CUDA a step neither waits for the device nor copies
what is never averaged.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from cvae.core.errors import CVAEError

MAX_FIRST_SHARE = 0.01  # the most of the average the first step may keep


def first_step_share(decay: float, steps: int) -> float:
    """The share of the first step's weights in the average after ``steps``."""
    return decay ** max(steps - 1, 0)


def check_decay(decay: float, steps: int) -> None:
    """Refuse, in one line, a decay under which the first step's weights keep
    more than :data:`MAX_FIRST_SHARE` of the average after ``steps`` steps."""
    share = first_step_share(decay, steps)
    if share > MAX_FIRST_SHARE:
        most = MAX_FIRST_SHARE ** (1 / (steps - 1))
        raise CVAEError(
            f"ema {decay} leaves {share:.0%} of the averaged weights to the first "
            f"step's in a run of {steps:,} steps: lower ema to at most "
            f"{math.floor(most * 1e4) / 1e4} or train longer"
        )


class WeightAverage:
    """The EMA of ``model``'s parameters (copies on their devices)."""

    def __init__(self, model: torch.nn.Module, *, decay: float):
        if not 0 < decay < 1:
            raise ValueError(f"the average's decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.params = [p.detach().clone() for p in model.parameters()]
        self.steps = 0  # steps folded in so far

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """Fold in ``model``'s weights after a step."""
        current = [p.detach() for p in model.parameters()]
        if self.steps == 0:
            torch._foreach_copy_(self.params, current)
        else:
            torch._foreach_lerp_(self.params, current, 1 - self.decay)
        self.steps += 1

    @torch.no_grad()
    def copy_to(self, model: torch.nn.Module) -> None:
        """Give ``model`` the averaged weights (in place; buffers untouched)."""
        if self.steps == 0:
            raise RuntimeError("no step has been averaged yet")
        for mine, theirs in zip(self.params, model.parameters(), strict=True):
            theirs.copy_(mine)

    def state(self) -> dict[str, Any]:
        """The average and its step count, for a resume state."""
        return {"params": list(self.params), "steps": self.steps}

    @torch.no_grad()
    def load(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state` (ValueError when it is another model's)."""
        params = state["params"]
        if len(params) != len(self.params) or any(
            a.shape != b.shape for a, b in zip(params, self.params, strict=True)
        ):
            raise ValueError("the weight average is another model's")
        for mine, saved in zip(self.params, params, strict=True):
            mine.copy_(saved)
        self.steps = int(state["steps"])
