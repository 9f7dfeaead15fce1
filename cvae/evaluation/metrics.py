"""Image metrics with the paper's definitions (Table 1 and 2).

- MSE: per image, the SUM over pixels (and channels) of squared differences of
  images in [0, 1]; the reported value is the mean over images.
- SSIM: per image, Gaussian window 11, sigma 1.5, data range 1, K1 0.01,
  K2 0.03 (Wang et al. 2004), population covariances. The paper does not say
  where the local SSIM map is averaged, and the two conventions differ a lot on
  28 px images, so both are reported:
  - ``ssim``: the map at every pixel of the reflect-padded image, averaged over
    all pixels and channels (torchmetrics' convention);
  - ``ssim_valid``: the map only where the 11x11 window fits inside the image
    (a 5-pixel border dropped), averaged: Wang et al.'s convention, scikit-image's
    ``structural_similarity`` default and most published code.
  The reported value is the mean over images.
"""

from __future__ import annotations

import torch
from torchmetrics.functional.image import structural_similarity_index_measure


def mse_sum(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Summed squared error per image. x, y: (B, C, H, W) in [0, 1] -> (B,)."""
    return (x.float() - y.float()).pow(2).flatten(1).sum(1)


SSIM_PAD = 5  # (window 11 - 1) / 2: border where the window does not fit


def ssim_map(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Local SSIM at every pixel of the reflect-padded images.

    x, y: (B, C, H, W) in [0, 1] -> (B, C, H, W).
    """
    _, full = structural_similarity_index_measure(
        x.float(),
        y.float(),
        gaussian_kernel=True,
        sigma=1.5,
        kernel_size=11,
        data_range=1.0,
        reduction="none",
        return_full_image=True,
    )
    return full


def ssim_both(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(``ssim``, ``ssim_valid``) per image from one SSIM map.

    x, y: (B, C, H, W) in [0, 1], H and W > 10 -> ((B,), (B,)).
    """
    local = ssim_map(x, y)
    p = SSIM_PAD
    return local.flatten(1).mean(1), local[..., p:-p, p:-p].flatten(1).mean(1)


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """SSIM per image, full-map mean. x, y: (B, C, H, W) in [0, 1] -> (B,)."""
    return ssim_both(x, y)[0]


def ssim_valid(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """SSIM per image, mean where the window fits (Wang et al., scikit-image)."""
    return ssim_both(x, y)[1]


class MeanMeter:
    """Streaming mean and standard deviation of per-image values (float64)."""

    def __init__(self) -> None:
        self.n = 0
        self.total = 0.0
        self.total_sq = 0.0

    def update(self, values: torch.Tensor) -> None:
        v = values.detach().double().cpu()
        self.n += v.numel()
        self.total += v.sum().item()
        self.total_sq += v.pow(2).sum().item()

    @property
    def mean(self) -> float:
        return self.total / max(self.n, 1)

    @property
    def std(self) -> float:
        var = self.total_sq / max(self.n, 1) - self.mean**2
        return max(var, 0.0) ** 0.5
