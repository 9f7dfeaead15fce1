"""A conditional VAE-GAN for 28x28 Fashion-MNIST, sampled from a fitted prior.

VAE decoders trained on a pixel likelihood alone draw the mean of what a latent
leaves open: blurry edges, and fine detail (a coat's buttons and zip, a
sandal's straps) washed out into the neighbouring classes. Two changes against
``gmm`` aim at that (``docs/results.md`` measures each):

- a deeper **residual decoder**: Linear -> (D1, 7, 7), residual block, then
  twice a transposed conv that doubles the side (7 -> 14 -> 28) and a residual
  block, then a 3x3 conv to logits;
- an **adversarial reconstruction term** while training (VAE-GAN, Larsen et
  al. 2016; its hinge form and adaptive weight from VQGAN, Esser et al. 2021):
  a class-conditional discriminator (``cvae.models.discriminator``) learns to
  tell real images from reconstructions, and the decoder learns to fool it.
  ``cvae.training.adversarial`` holds the loop; the discriminator is not part
  of the model file, which generates without it.

Generation is ``gmm``'s: z from a per-class Gaussian mixture fitted to the
training posteriors, at a temperature, decoded with the label.

    train   min  recon + beta * KL + lambda * weight * adv   (adv = -D(decode(z, c), c))
    fit     p(z | c) <- GMM of {mu(x_i, c_i) : c_i = c}
    sample  z ~ p(z | c) at temperature t, x = decode(z, c)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cvae.models.base import ConditionalVAE, Conditioning
from cvae.models.conv import conv_encoder
from cvae.models.gmm import FittedPrior
from cvae.models.prior import ClassGMMPrior


@dataclass
class VAEGANConfig:
    image_size: int  # square image side; must be 28
    in_channels: int  # 1 = grayscale
    channels: list[int]  # 3 encoder conv widths (28 -> 14 -> 7 -> 4)
    decoder_channels: list[int]  # decoder widths at 7, 14 and 28 px
    latent_dim: int  # size of z
    conditioning: Conditioning  # how the label joins features and z
    num_classes: int  # labels 0..num_classes-1
    embed_dim: int  # label embedding size (concat only)
    components: int  # Gaussian components per class in the fitted prior
    temperature: float  # sampling spread: z = mean + temperature * L eps (1: the fit)


class ResidualBlock(nn.Module):
    """x + Conv3x3(SiLU(Conv3x3(SiLU(x)))), same width and side."""

    def __init__(self, width: int):
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.silu(self.conv1(F.silu(x))))


def residual_decoder(widths: list[int], out_channels: int) -> nn.Sequential:
    """(B, D1 * 49) -> logits (B, out_channels, 28, 28); widths (D1, D2, D3) at
    7, 14 and 28 px. Its last module is the output conv (the adaptive weight of
    the adversarial term compares gradients there)."""
    d1, d2, d3 = widths
    return nn.Sequential(
        nn.Unflatten(1, (d1, 7, 7)),
        ResidualBlock(d1),  # (B, D1, 7, 7)
        nn.SiLU(),
        nn.ConvTranspose2d(d1, d2, 4, stride=2, padding=1),  # (B, D2, 14, 14)
        ResidualBlock(d2),
        nn.SiLU(),
        nn.ConvTranspose2d(d2, d3, 4, stride=2, padding=1),  # (B, D3, 28, 28)
        nn.SiLU(),
        nn.Conv2d(d3, out_channels, 3, padding=1),  # logits
    )


class VAEGANCVAE(FittedPrior, ConditionalVAE):
    """Conv encoder (as ``conv``), residual decoder, fitted per-class prior."""

    def __init__(self, cfg: VAEGANConfig):
        if cfg.image_size != 28 or len(cfg.channels) != 3:
            raise ValueError("VAEGANCVAE is built for 28x28 images and 3 conv layers")
        if len(cfg.decoder_channels) != 3:
            raise ValueError("decoder_channels needs 3 widths (7, 14 and 28 px)")
        super().__init__(
            encoder=conv_encoder(cfg.in_channels, cfg.channels),
            feature_dim=cfg.channels[2] * 16,
            decoder=residual_decoder(cfg.decoder_channels, cfg.in_channels),
            decoder_in=cfg.decoder_channels[0] * 49,
            latent_dim=cfg.latent_dim,
            conditioning=cfg.conditioning,
            num_classes=cfg.num_classes,
            embed_dim=cfg.embed_dim,
        )
        self.config = cfg
        self.prior = ClassGMMPrior(
            num_classes=cfg.num_classes,
            components=cfg.components,
            latent_dim=cfg.latent_dim,
        )

    @property
    def output_layer(self) -> nn.Module:
        """The decoder's last layer (where reconstruction and adversarial
        gradients are compared)."""
        return self.decoder[-1]
