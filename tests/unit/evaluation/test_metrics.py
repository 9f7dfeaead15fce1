"""Metrics against naive reference implementations."""

import numpy as np
import pytest
import torch
from scipy.signal import correlate2d

from cvae.evaluation.metrics import MeanMeter, mse_sum, ssim, ssim_valid


def naive_mse_sum(x: np.ndarray, y: np.ndarray) -> list[float]:
    out = []
    for a, b in zip(x, y):
        total = 0.0
        for va, vb in zip(a.ravel().tolist(), b.ravel().tolist()):
            total += (va - vb) ** 2
        out.append(total)
    return out


def naive_ssim(a: np.ndarray, b: np.ndarray, k: int = 11, sigma: float = 1.5) -> float:
    """Wang et al. (2004), Gaussian-weighted local statistics, one window per pixel
    of the reflect-padded image (torchmetrics' convention), averaged."""
    c1, c2 = 0.01**2, 0.03**2
    ax = np.arange(k) - (k - 1) / 2
    g = np.exp(-(ax**2) / (2 * sigma**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    vals = []
    for ch_a, ch_b in zip(a, b):  # channels
        pad = (k - 1) // 2

        def f(img: np.ndarray) -> np.ndarray:
            return correlate2d(np.pad(img, pad, mode="reflect"), w, mode="valid")

        mu_a, mu_b = f(ch_a), f(ch_b)
        va = f(ch_a * ch_a) - mu_a**2
        vb = f(ch_b * ch_b) - mu_b**2
        cov = f(ch_a * ch_b) - mu_a * mu_b
        s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
            (mu_a**2 + mu_b**2 + c1) * (va + vb + c2)
        )
        vals.append(s.mean())
    return float(np.mean(vals))


def _pair(c: int, size: int, n: int = 3):
    g = torch.Generator().manual_seed(c * 100 + size)
    x = torch.rand(n, c, size, size, generator=g, dtype=torch.float64)
    y = (
        x + 0.2 * torch.randn(n, c, size, size, generator=g, dtype=torch.float64)
    ).clamp(0, 1)
    return x, y


@pytest.mark.parametrize("c, size", [(1, 28), (3, 32)])
def test_mse_sum_matches_naive(c: int, size: int) -> None:
    x, y = _pair(c, size)
    assert mse_sum(x, y).tolist() == pytest.approx(naive_mse_sum(x.numpy(), y.numpy()))


@pytest.mark.parametrize("c, size", [(1, 28), (3, 32)])
def test_ssim_matches_naive(c: int, size: int) -> None:
    x, y = _pair(c, size)
    got = ssim(x, y).tolist()
    want = [naive_ssim(a, b) for a, b in zip(x.numpy(), y.numpy())]
    assert got == pytest.approx(want, abs=1e-4)


@pytest.mark.parametrize("c, size", [(1, 28), (3, 64)])
def test_ssim_valid_matches_scikit_image(c: int, size: int) -> None:
    """The cropped convention is scikit-image's Gaussian SSIM (Wang et al.)."""
    structural_similarity = pytest.importorskip("skimage.metrics").structural_similarity
    torch.manual_seed(c)
    x = torch.rand(4, c, size, size)
    y = (x + 0.3 * torch.randn_like(x)).clamp(0, 1)
    want = [
        structural_similarity(
            a,
            b,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1.0,
            channel_axis=0,
        )
        for a, b in zip(x.double().numpy(), y.double().numpy())
    ]
    assert ssim_valid(x, y).tolist() == pytest.approx(want, abs=1e-5)
    # The two conventions really differ (the border is where they do).
    assert (ssim(x, y) - ssim_valid(x, y)).abs().max() > 1e-3


def test_ssim_bounds() -> None:
    x, _ = _pair(1, 28)
    assert ssim(x, x).tolist() == pytest.approx([1.0] * 3)
    assert (ssim(x, 1 - x) < 0.1).all()


def test_mean_meter() -> None:
    m = MeanMeter()
    m.update(torch.tensor([1.0, 2.0]))
    m.update(torch.tensor([3.0]))
    assert m.mean == pytest.approx(2.0) and m.std == pytest.approx(np.std([1, 2, 3]))
