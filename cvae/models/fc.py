"""Fully connected CVAE for 28x28 Fashion-MNIST (paper section 3.2)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from cvae.models.base import ConditionalVAE, Conditioning


@dataclass
class FCConfig:
    image_size: int  # square image side
    in_channels: int  # 1 = grayscale
    hidden_dims: list[int]  # encoder widths
    latent_dim: int  # size of z
    conditioning: Conditioning  # how the label joins features and z
    num_classes: int  # labels 0..num_classes-1
    embed_dim: int  # label embedding size (concat only)


class FCCVAE(ConditionalVAE):
    """Encoder: flatten, Linear+ReLU per hidden width, condition, then (mu, logvar).

    Decoder: (z, condition) -> Linear+ReLU per reversed hidden width -> Linear to
    C*H*W logits, reshaped to (B, C, H, W).
    """

    def __init__(self, cfg: FCConfig):
        self.config = cfg
        d = cfg.in_channels * cfg.image_size**2
        enc: list[nn.Module] = [nn.Flatten()]
        for a, b in zip([d, *cfg.hidden_dims[:-1]], cfg.hidden_dims):
            enc += [nn.Linear(a, b), nn.ReLU()]
        rev = cfg.hidden_dims[::-1]
        dec: list[nn.Module] = [nn.ReLU()]  # after decoder_input: z -> rev[0]
        for a, b in zip(rev, rev[1:]):
            dec += [nn.Linear(a, b), nn.ReLU()]
        dec += [
            nn.Linear(rev[-1], d),
            nn.Unflatten(1, (cfg.in_channels, cfg.image_size, cfg.image_size)),
        ]
        super().__init__(
            encoder=nn.Sequential(*enc),
            feature_dim=cfg.hidden_dims[-1],
            decoder=nn.Sequential(*dec),
            decoder_in=rev[0],
            latent_dim=cfg.latent_dim,
            conditioning=cfg.conditioning,
            num_classes=cfg.num_classes,
            embed_dim=cfg.embed_dim,
        )
