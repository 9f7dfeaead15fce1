"""CVAE architectures and a registry that builds them from a config dict."""

from __future__ import annotations

from typing import Any

from cvae.core.errors import CVAEError
from cvae.models.base import CONDITIONINGS, ConditionalVAE, Conditioner
from cvae.models.config import from_params
from cvae.models.conv import ConvConfig, ConvCVAE
from cvae.models.fc import FCCVAE, FCConfig
from cvae.models.gmm import GMMCVAE, GMMConfig, check_temperature
from cvae.models.image import BLOCKS, ImageConfig, ImageCVAE
from cvae.models.vaegan import VAEGANCVAE, VAEGANConfig

ARCHS: dict[str, tuple[type, type]] = {
    "fc": (FCCVAE, FCConfig),
    "conv": (ConvCVAE, ConvConfig),
    "gmm": (GMMCVAE, GMMConfig),
    "image": (ImageCVAE, ImageConfig),
    "vaegan": (VAEGANCVAE, VAEGANConfig),
}
# The architectures trained on Fashion-MNIST labels (fc and conv: the paper's
# Table 1; gmm: conv with a fitted per-class prior; vaegan: a residual decoder
# trained with an adversarial term, the same prior). The params schema's
# sections (fashion.model) and the names fashion.archs accepts, the CLI and the
# report follow this list (tests/repo checks the schema); dvc.yaml's matrices run
# the ones fashion.archs lists.
FASHION_ARCHS = ("fc", "conv", "gmm", "vaegan")

__all__ = [
    "ARCHS",
    "FASHION_ARCHS",
    "BLOCKS",
    "CONDITIONINGS",
    "Conditioner",
    "ConditionalVAE",
    "ConvCVAE",
    "ConvConfig",
    "FCCVAE",
    "FCConfig",
    "GMMCVAE",
    "GMMConfig",
    "ImageCVAE",
    "ImageConfig",
    "VAEGANCVAE",
    "VAEGANConfig",
    "build_model",
    "make_config",
]


def make_config(arch: str, params: dict[str, Any]) -> Any:
    """Config dataclass of ``arch`` from a params dict, checking every key and value."""
    if arch not in ARCHS:
        raise CVAEError(f"unknown arch {arch!r}: use one of {sorted(ARCHS)}")
    cfg = from_params(ARCHS[arch][1], params, f"{arch} model")
    if cfg.conditioning not in CONDITIONINGS:
        raise CVAEError(
            f"conditioning {cfg.conditioning!r} is not supported: use one of "
            f"{list(CONDITIONINGS)}"
        )
    if cfg.latent_dim < 1:
        raise CVAEError(f"latent_dim must be >= 1, got {cfg.latent_dim}")
    if hasattr(cfg, "components") and cfg.components < 1:
        raise CVAEError(f"components must be >= 1, got {cfg.components}")
    if hasattr(cfg, "temperature"):
        check_temperature(cfg.temperature)
    if arch == "image" and cfg.image_size not in BLOCKS:
        raise CVAEError(
            f"size {cfg.image_size} is not supported: use one of {sorted(BLOCKS)}"
        )
    return cfg


def build_model(arch: str, params: dict[str, Any]) -> ConditionalVAE:
    """Build an untrained model of ``arch`` from its params dict."""
    cfg = make_config(arch, params)
    return ARCHS[arch][0](cfg)
