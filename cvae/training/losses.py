"""The negative ELBO of a CVAE, as named terms.

    loss = recon + beta * kl
    recon = -log p(x | z, c) summed over pixels (Bernoulli: BCE; or squared error)
    kl    = KL(N(mu, sigma^2) || N(0, I)) = -1/2 sum(1 + logvar - mu^2 - exp(logvar))

All terms are summed over the batch (as in seed 000's ``loss_function``); divide
by the batch size for per-image values.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

RECON_LOSSES = ("bce", "mse")


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x,c) || N(0, I)) summed over batch and latent dims. mu, logvar: (B, L)."""
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())


def reconstruction(
    logits: torch.Tensor, x: torch.Tensor, kind: str = "bce"
) -> torch.Tensor:
    """-log p(x|z,c) summed: BCE on logits (stable), or squared error."""
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
    if kind == "mse":
        return F.mse_loss(torch.sigmoid(logits), x, reduction="sum")
    raise ValueError(f"recon must be one of {RECON_LOSSES}")


def elbo_loss(
    logits: torch.Tensor,
    x: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    *,
    beta: float = 1.0,
    recon: str = "bce",
) -> dict[str, torch.Tensor]:
    """{"loss", "recon", "kl"}, each summed over the batch."""
    rec = reconstruction(logits.float(), x.float(), recon)
    kl = kl_divergence(mu.float(), logvar.float())
    return {"loss": rec + beta * kl, "recon": rec, "kl": kl}
