"""The conv CVAE sampled from a fitted per-class Gaussian mixture.

Same network as :class:`cvae.models.conv.ConvCVAE` (so the paper's conv weights
load into it unchanged); what differs is how it generates. Instead of
z ~ N(0, I), ``sample`` draws z from :class:`cvae.models.prior.ClassGMMPrior`,
a Gaussian mixture per class fitted after training to the posterior means of
the training images (RAE / two-stage VAE). That frees the KL weight ``beta``
from its second job (making N(0, I) a good sampler), so the model is trained
with beta < 1: sharper reconstructions, and the fitted prior keeps the samples
on the data.

    train   min  recon(x, decode(z, c)) + beta * KL(q(z|x,c) || N(0, I))
    fit     p(z | c) <- GMM of {mu(x_i, c_i) : c_i = c}     (fit_prior)
    sample  z ~ p(z | c) at temperature t, x = decode(z, c)

The temperature t scales each component's spread (z = mean + t * L eps): t = 1
samples the fitted density, t < 1 draws closer to the component means (more
prototypical, more recognisable images, less variety), the accuracy/diversity
trade-off of Kingma & Dhariwal's (Glow) reduced-temperature sampling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch

from cvae.core.errors import UsageError
from cvae.models.base import Conditioning, to_float_images
from cvae.models.conv import ConvConfig, ConvCVAE
from cvae.models.prior import ClassGMMPrior


@dataclass
class GMMConfig:
    image_size: int  # square image side; must be 28
    in_channels: int  # 1 = grayscale
    channels: list[int]  # 3 conv widths
    latent_dim: int  # size of z
    conditioning: Conditioning  # how the label joins features and z
    num_classes: int  # labels 0..num_classes-1
    embed_dim: int  # label embedding size (concat only)
    components: int  # Gaussian components per class in the fitted prior
    temperature: float  # sampling spread: z = mean + temperature * L eps (1: the fit)


def check_temperature(t: float) -> None:
    """A sampling temperature: a finite number > 0, or a one-line error."""
    if not (t > 0 and math.isfinite(t)):  # also refuses NaN
        raise UsageError(f"temperature must be a finite number > 0, got {t}")


class FittedPrior:
    """Sampling from ``self.prior`` (a :class:`ClassGMMPrior`), fitted to the
    training posteriors after training; mixed into a ConditionalVAE whose config
    has ``temperature``."""

    prior: ClassGMMPrior

    @torch.no_grad()
    def posterior_means(
        self, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int
    ) -> torch.Tensor:
        """mu(x, c) of q(z | x, c) for uint8 or [0, 1] images (N, C, H, W) and
        labels (N,): (N, L) float32 on the CPU (eval mode, batched)."""
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        out = []
        for start in range(0, len(images), batch_size):
            x = to_float_images(images[start : start + batch_size].to(device))
            mu, _ = self.encode(x, labels[start : start + batch_size].to(device))
            out.append(mu.float().cpu())
        self.train(was_training)
        return torch.cat(out)

    def fit_prior(
        self, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int, seed: int
    ) -> None:
        """Fit p(z | c) to the posterior means of (images (N, C, H, W), labels (N,))."""
        z = self.posterior_means(images, labels, batch_size=batch_size)
        self.prior.fit(z, labels, seed=seed)

    def set_temperature(self, t: float) -> None:
        """Sample at temperature ``t`` (> 0; 1: the fitted density) from now on."""
        check_temperature(t)
        self.config.temperature = t

    @torch.no_grad()
    def sample(
        self, c: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """One image per label c (B,): z ~ p(z | c) at the config's temperature
        (drawn on the CPU), decode(z, c)."""
        p = next(self.parameters())
        z = self.prior.sample(c, generator, temperature=self.config.temperature)
        return self.decode(z.to(device=p.device, dtype=p.dtype), c)


class GMMCVAE(FittedPrior, ConvCVAE):
    """ConvCVAE + ``prior``: p(z | c), fitted to training posteriors, sampled from."""

    def __init__(self, cfg: GMMConfig):
        conv = {f.name: getattr(cfg, f.name) for f in fields(ConvConfig)}
        super().__init__(ConvConfig(**conv))
        self.config = cfg  # type: ignore[assignment]
        self.prior = ClassGMMPrior(
            num_classes=cfg.num_classes,
            components=cfg.components,
            latent_dim=cfg.latent_dim,
        )
