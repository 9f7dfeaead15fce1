"""Evaluation of a trained CVAE: reconstruction metrics, generation grids."""

from __future__ import annotations

from typing import Any

import torch

from cvae.core.progress import bar
from cvae.evaluation.metrics import MeanMeter, mse_sum, ssim_both
from cvae.evaluation.sampling import generate, reconstruct
from cvae.models import ConditionalVAE


class ReconstructionMeter:
    """Running per-image summed MSE and SSIM (both conventions, see
    ``cvae.evaluation.metrics``) of reconstructions against their originals."""

    def __init__(self) -> None:
        self.mse, self.ssim, self.ssim_valid = MeanMeter(), MeanMeter(), MeanMeter()
        self.pixels = 0  # values per image

    def update(self, recons: torch.Tensor, originals: torch.Tensor) -> None:
        """recons, originals: (B, C, H, W) float in [0, 1]."""
        self.mse.update(mse_sum(recons, originals))
        full, valid = ssim_both(recons, originals)
        self.ssim.update(full)
        self.ssim_valid.update(valid)
        self.pixels = originals[0].numel()

    def result(self) -> dict[str, Any]:
        return {
            "n": self.mse.n,
            "mse": self.mse.mean,
            "mse_std": self.mse.std,
            "mse_per_pixel": self.mse.mean / self.pixels,
            "ssim": self.ssim.mean,
            "ssim_std": self.ssim.std,
            "ssim_valid": self.ssim_valid.mean,
            "ssim_valid_std": self.ssim_valid.std,
        }


@torch.no_grad()
def reconstruction_metrics(
    model: ConditionalVAE,
    images: torch.Tensor,
    conds: torch.Tensor,
    *,
    batch_size: int = 500,
    keep: int = 0,
) -> tuple[dict[str, Any], torch.Tensor | None]:
    """``ReconstructionMeter`` metrics of decode(mu) against the originals.

    images: uint8 (N, C, H, W); conds: (N,) labels or (N, D) vectors.
    Returns (metrics, the first ``keep`` reconstructions or None).
    """
    meter = ReconstructionMeter()
    kept: list[torch.Tensor] = []
    steps = -(-len(images) // batch_size)
    recons = reconstruct(model, images, conds, batch_size=batch_size)
    for _, x, r in bar(recons, "reconstruct", total=steps, unit="batch"):
        meter.update(r, x)
        if keep and sum(len(k) for k in kept) < keep:
            kept.append(r)
    return meter.result(), (torch.cat(kept)[:keep] if kept else None)


def comparison_grid(
    originals: torch.Tensor, recons: torch.Tensor, nrow: int
) -> torch.Tensor:
    """Rows of originals followed by their reconstructions, nrow per row."""
    rows = []
    for start in range(0, len(originals), nrow):
        for part in (originals[start : start + nrow], recons[start : start + nrow]):
            blank = torch.ones(nrow - len(part), *part.shape[1:])  # white padding
            rows += [part, blank.to(part)]  # a short last row never mixes the two
    return torch.cat(rows)


def generation_grid(
    model: ConditionalVAE, conds: list[torch.Tensor], n: int, *, seed: int = 0
) -> torch.Tensor:
    """n samples per condition, one condition per row, (len(conds) * n, C, H, W)."""
    return torch.cat(
        [generate(model, c, n, seed=seed + i) for i, c in enumerate(conds)]
    )


def fid_to_reference(
    fid: Any, reference: tuple[Any, Any], images: torch.Tensor
) -> float:
    """FID of ``images`` (N, C, H, W) against saved real statistics (mu, sigma).

    ``fid`` is a :class:`cvae.evaluation.fid.FID`; its fake-image state is reset first.
    """
    from cvae.evaluation.fid import frechet_distance

    fid.reset(keep_real=True)
    fid.update(images, real=False)
    return frechet_distance(*reference, *fid.stats(real=False))


@torch.no_grad()
def generate_per_condition(
    model: ConditionalVAE,
    conds: list[torch.Tensor],
    n_per: int,
    *,
    seed: int = 0,
    batch_size: int = 1000,
) -> torch.Tensor:
    """n_per samples for each condition, (len(conds) * n_per, C, H, W) on CPU."""
    out = []
    for i, c in enumerate(conds):
        for j, start in enumerate(range(0, n_per, batch_size)):
            n = min(batch_size, n_per - start)
            out.append(generate(model, c, n, seed=seed + 1000 * i + j))
    return torch.cat(out)
