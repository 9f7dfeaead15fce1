"""A class-conditional discriminator for 28x28 images (the VAE-GAN's critic).

Projection discriminator (Miyato & Koyama, 2018) with spectral normalisation
(Miyato et al., 2018) on every layer:

    h = phi(x)                               (B, F): 3 strided convs, LeakyReLU
    D(x, c) = w . h + embed(c) . h           (B,): a real-vs-reconstruction score

The projection term makes the score depend on whether x looks like an image of
class c, so fooling it pushes the decoder towards class-typical detail.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


@dataclass
class DiscriminatorConfig:
    image_size: int  # must be 28
    in_channels: int
    channels: list[int]  # 3 conv widths: 28 -> 14 -> 7 -> 4
    num_classes: int


class ProjectionDiscriminator(nn.Module):
    """D(x, c) for images in [0, 1] (B, C, 28, 28) and labels (B,): scores (B,)."""

    def __init__(self, cfg: DiscriminatorConfig):
        super().__init__()
        if cfg.image_size != 28 or len(cfg.channels) != 3:
            raise ValueError("the discriminator is built for 28x28 images, 3 convs")
        self.config = cfg
        c1, c2, c3 = cfg.channels
        self.features = nn.Sequential(
            spectral_norm(nn.Conv2d(cfg.in_channels, c1, 4, stride=2, padding=1)),
            nn.LeakyReLU(0.2),  # (B, c1, 14, 14)
            spectral_norm(nn.Conv2d(c1, c2, 4, stride=2, padding=1)),
            nn.LeakyReLU(0.2),  # (B, c2, 7, 7)
            spectral_norm(nn.Conv2d(c2, c3, 3, stride=2, padding=1)),
            nn.LeakyReLU(0.2),  # (B, c3, 4, 4)
            nn.Flatten(),
        )
        width = c3 * 16
        self.score = spectral_norm(nn.Linear(width, 1))
        self.embed = spectral_norm(nn.Embedding(cfg.num_classes, width))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = self.features(x * 2 - 1)  # [0, 1] -> [-1, 1]
        return self.score(h).squeeze(1) + (self.embed(c) * h).sum(1)

    def class_scores(self, x: torch.Tensor) -> torch.Tensor:
        """D(x, k) for every class k (B, K): one feature pass for all labels."""
        h = self.features(x * 2 - 1)
        return self.score(h) + h @ self.embed.weight.T
