"""The conditional VAE skeleton shared by every architecture.

Shape letters: B batch, C image channels, H/W image size, F encoder feature
size, L latent size, E condition embedding size, D condition vector size.

    encode(x, c)        q(z | x, c) = N(mu, diag(exp(logvar)))  -> (mu, logvar)  (B, L)
    reparameterize      z = mu + exp(logvar / 2) * eps, eps ~ N(0, I)
    decode_logits(z, c) logits of p(x | z, c), Bernoulli per pixel   (B, C, H, W)
    decode(z, c)        sigmoid(decode_logits(z, c)), images in [0, 1]

Conditioning ``concat`` joins the condition embedding to the encoder features
and to z; ``add`` projects the condition to the same width and adds it.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

Conditioning = Literal["concat", "add"]
CONDITIONINGS = ("concat", "add")


def to_float_images(x: torch.Tensor) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float32 in [0, 1]."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


class Conditioner(nn.Module):
    """Condition -> vector: an embedding table for labels, a linear map for vectors.

    c: labels (B,) int64 when ``num_classes`` is set, else vectors (B, D) float.
    """

    def __init__(self, *, num_classes: int | None, cond_dim: int | None, out_dim: int):
        super().__init__()
        if (num_classes is None) == (cond_dim is None):
            raise ValueError("give exactly one of num_classes and cond_dim")
        if num_classes is not None:
            self.net: nn.Module = nn.Embedding(num_classes, out_dim)
        else:
            self.net = nn.Linear(cond_dim, out_dim)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        return self.net(c)  # (B, out_dim)


class ConditionalVAE(nn.Module):
    """A CVAE from an encoder trunk, a decoder trunk and a conditioning mode.

    encoder: x (B, C, H, W) -> h (B, F).
    decoder: (B, decoder_in) -> logits (B, C, H, W).
    """

    def __init__(
        self,
        *,
        encoder: nn.Module,
        feature_dim: int,
        decoder: nn.Module,
        decoder_in: int,
        latent_dim: int,
        conditioning: Conditioning,
        num_classes: int | None = None,
        cond_dim: int | None = None,
        embed_dim: int = 32,
    ):
        super().__init__()
        if conditioning not in CONDITIONINGS:
            raise ValueError(f"conditioning must be one of {CONDITIONINGS}")
        self.conditioning = conditioning
        self.latent_dim = latent_dim
        self.encoder = encoder
        self.decoder = decoder
        cond = {"num_classes": num_classes, "cond_dim": cond_dim}
        if conditioning == "concat":
            self.cond_enc = Conditioner(**cond, out_dim=embed_dim)
            self.cond_dec = Conditioner(**cond, out_dim=embed_dim)
            head_in, z_in = feature_dim + embed_dim, latent_dim + embed_dim
        else:
            self.cond_enc = Conditioner(**cond, out_dim=feature_dim)
            self.cond_dec = Conditioner(**cond, out_dim=latent_dim)
            head_in, z_in = feature_dim, latent_dim
        self.fc_mu = nn.Linear(head_in, latent_dim)
        self.fc_logvar = nn.Linear(head_in, latent_dim)
        self.decoder_input = nn.Linear(z_in, decoder_in)

    def _join(self, h: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        return torch.cat([h, e], dim=1) if self.conditioning == "concat" else h + e

    def encode(
        self, x: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z | x, c): (mu, logvar), each (B, L)."""
        h = self._join(self.encoder(x), self.cond_enc(c))
        return self.fc_mu(h), self.fc_logvar(h)

    @staticmethod
    def reparameterize(
        mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """z = mu + sigma * eps with eps ~ N(0, I)."""
        eps = torch.randn(
            mu.shape, generator=generator, device=mu.device, dtype=mu.dtype
        )
        return mu + torch.exp(0.5 * logvar) * eps

    def decode_logits(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits of p(x | z, c), (B, C, H, W)."""
        return self.decoder(self.decoder_input(self._join(z, self.cond_dec(c))))

    def decode(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Mean image of p(x | z, c) in [0, 1], (B, C, H, W)."""
        return torch.sigmoid(self.decode_logits(z, c))

    def forward(
        self, x: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x_logits (B,C,H,W), mu (B,L), logvar (B,L)) for the ELBO."""
        mu, logvar = self.encode(x, c)
        z = self.reparameterize(mu, logvar)
        return self.decode_logits(z, c), mu, logvar

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Deterministic reconstruction from the posterior mean: decode(mu, c)."""
        mu, _ = self.encode(x, c)
        return self.decode(mu, c)

    @torch.no_grad()
    def sample(
        self, c: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Generate one image per condition: z ~ N(0, I), decode(z, c)."""
        n = c.shape[0]
        p = next(self.parameters())
        z = torch.randn((n, self.latent_dim), generator=generator, device="cpu")
        return self.decode(z.to(device=p.device, dtype=p.dtype), c)
