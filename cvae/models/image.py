"""Convolutional CVAE for COCO colour images at 64, 128 or 256 px (paper 3.5).

Conditioned on a CLIP vector (caption or image embedding, D = 512 for ViT-B-32).
Down path: n blocks of Conv(4, s2, p1) + BatchNorm + ReLU with n = 3, 4, 5 for
64, 128, 256 px, so the bottleneck is always 8x8. Up path: n ConvTranspose(4,
s2, p1) layers, all but the last followed by BatchNorm + ReLU; the last gives
the 3-channel logits (sigmoid applied by ``decode``).

Bounded log-variance: the heads read ``widths[-1] * 8 * 8`` features (32,768 at
256 px), and Adam moves every weight by about ``lr`` on its first steps, so one
step can move a head's output by ``lr * fan_in``: the log-variance jumped from 2
to 20 in one step at 256 px (KL 1e8 per image). The encoder's log-variance is
therefore bounded above, smoothly: ``m - softplus(m - raw)`` with
``m = logvar_max`` (about ``raw`` well below ``m``, never above it; unbounded
below, where the KL grows only linearly). A posterior wider than the N(0, I)
prior only costs KL, so a small ``m`` loses nothing; each KL term is then at
most ``(e^m - m - 1) / 2`` plus the ``mu`` part. ``None`` leaves it unbounded
(models saved before the bound existed).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cvae.models.base import ConditionalVAE, Conditioning

BLOCKS = {64: 3, 128: 4, 256: 5}  # image side -> down/up blocks


@dataclass
class ImageConfig:
    image_size: int  # square image side: 64, 128 or 256
    in_channels: int  # RGB
    base_channels: int  # width of the first block, doubled per block
    latent_dim: int  # size of z (the paper: >= 512 for COCO)
    conditioning: Conditioning  # how the CLIP vector joins features and z
    cond_dim: int  # CLIP embedding size
    embed_dim: int  # projected condition size (concat only)
    logvar_max: float | None  # smooth upper bound of the log-variance (None: none)


class ImageCVAE(ConditionalVAE):
    def __init__(self, cfg: ImageConfig):
        if cfg.image_size not in BLOCKS:
            raise ValueError(f"image_size must be one of {sorted(BLOCKS)}")
        self.config = cfg
        n = BLOCKS[cfg.image_size]
        widths = [cfg.base_channels * 2**i for i in range(n)]  # e.g. 32, 64, 128
        side = cfg.image_size // 2**n  # 8
        enc: list[nn.Module] = []
        for a, b in zip([cfg.in_channels, *widths[:-1]], widths):
            enc += [
                nn.Conv2d(a, b, 4, stride=2, padding=1),
                nn.BatchNorm2d(b),
                nn.ReLU(),
            ]
        enc.append(nn.Flatten())  # (B, widths[-1] * 8 * 8)
        feat = widths[-1] * side * side
        dec: list[nn.Module] = [nn.Unflatten(1, (widths[-1], side, side))]
        rev = widths[::-1]
        for a, b in zip(rev, rev[1:]):
            dec += [
                nn.ConvTranspose2d(a, b, 4, stride=2, padding=1),
                nn.BatchNorm2d(b),
                nn.ReLU(),
            ]
        dec.append(nn.ConvTranspose2d(rev[-1], cfg.in_channels, 4, stride=2, padding=1))
        super().__init__(
            encoder=nn.Sequential(*enc),
            feature_dim=feat,
            decoder=nn.Sequential(*dec),
            decoder_in=feat,
            latent_dim=cfg.latent_dim,
            conditioning=cfg.conditioning,
            cond_dim=cfg.cond_dim,
            embed_dim=cfg.embed_dim,
        )
        self.logvar_max = cfg.logvar_max

    def encode(
        self, x: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z | x, c): (mu, logvar), logvar smoothly bounded above by logvar_max."""
        mu, logvar = super().encode(x, c)
        m = self.logvar_max
        return mu, logvar if m is None else m - F.softplus(m - logvar)
