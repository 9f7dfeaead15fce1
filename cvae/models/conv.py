"""Convolutional CVAE for 28x28 Fashion-MNIST (paper section 3.3, seed 000)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from cvae.models.base import ConditionalVAE, Conditioning


@dataclass
class ConvConfig:
    image_size: int  # square image side; must be 28 (three stride-2 convs -> 4x4)
    in_channels: int  # 1 = grayscale
    channels: list[int]  # conv widths
    latent_dim: int  # size of z
    conditioning: Conditioning  # how the label joins features and z
    num_classes: int  # labels 0..num_classes-1
    embed_dim: int  # label embedding size (concat only)


def conv_encoder(in_channels: int, channels: list[int]) -> nn.Sequential:
    """3 x (Conv 3x3 stride 2 + ReLU): (B, C, 28, 28) -> 14 -> 7 -> 4, flattened
    to (B, channels[2] * 16)."""
    c1, c2, c3 = channels
    return nn.Sequential(
        nn.Conv2d(in_channels, c1, 3, stride=2, padding=1),  # (B, c1, 14, 14)
        nn.ReLU(),
        nn.Conv2d(c1, c2, 3, stride=2, padding=1),  # (B, c2, 7, 7)
        nn.ReLU(),
        nn.Conv2d(c2, c3, 3, stride=2, padding=1),  # (B, c3, 4, 4)
        nn.ReLU(),
        nn.Flatten(),  # (B, c3 * 16)
    )


class ConvCVAE(ConditionalVAE):
    """Encoder: 3 x (Conv 3x3 stride 2 + ReLU): 28 -> 14 -> 7 -> 4, flattened.

    Decoder: Linear -> (C3, 4, 4) -> ConvT(k2,s2,p1,op1) 4->7 -> ConvT(k3,s2,p1,op1)
    7->14 -> ConvT(k3,s2,p1,op1) 14->28 logits, ReLU between.
    """

    def __init__(self, cfg: ConvConfig):
        if cfg.image_size != 28 or len(cfg.channels) != 3:
            raise ValueError("ConvCVAE is built for 28x28 images and 3 conv layers")
        self.config = cfg
        c1, c2, c3 = cfg.channels
        encoder = conv_encoder(cfg.in_channels, cfg.channels)
        decoder = nn.Sequential(
            nn.Unflatten(1, (c3, 4, 4)),
            nn.ConvTranspose2d(c3, c2, 2, stride=2, padding=1, output_padding=1),  # 7x7
            nn.ReLU(),
            nn.ConvTranspose2d(c2, c1, 3, stride=2, padding=1, output_padding=1),  # 14
            nn.ReLU(),
            nn.ConvTranspose2d(
                c1, cfg.in_channels, 3, stride=2, padding=1, output_padding=1
            ),
        )
        super().__init__(
            encoder=encoder,
            feature_dim=c3 * 16,
            decoder=decoder,
            decoder_in=c3 * 16,
            latent_dim=cfg.latent_dim,
            conditioning=cfg.conditioning,
            num_classes=cfg.num_classes,
            embed_dim=cfg.embed_dim,
        )
