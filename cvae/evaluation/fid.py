"""Fully offline FID (Heusel et al. 2017) on the Inception-v3 of
``cvae.evaluation.inception``.

``FID`` extracts features and keeps float64 running sums with torchmetrics'
``FrechetInceptionDistance`` on the converted weights file; ``RunningStats``
keeps the same sums for any number of further image sets (a streaming
evaluation); ``frechet_distance`` computes the distance from two (mean,
covariance) pairs.

Shapes: N images, C channels (1 or 3), H x W pixels, D = 2048 features.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from cvae.core.progress import bar
from cvae.evaluation.inception import (
    FEATURE_DIM,
    download_error,
    existing_weights,
    inception_features,
    no_weight_download,
    to_uint8_rgb,
)


def _drop_roundoff(eigvals: np.ndarray) -> np.ndarray:
    """Zero the eigenvalues (D,) that are round-off: below D * eps * max."""
    tol = eigvals.size * np.finfo(np.float64).eps * max(float(eigvals.max()), 0.0)
    return np.where(eigvals > tol, eigvals, 0.0)


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2).

    d^2 = |mu1 - mu2|^2 + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^(1/2)),
    mu (D,), sigma (D, D) symmetric PSD. tr((s1 s2)^(1/2)) is computed as the sum
    of sqrt-eigenvalues of the symmetric PSD s1^(1/2) s2 s1^(1/2) (same spectrum
    as s1 s2), in float64. Eigenvalues below round-off (D * eps * the largest)
    count as 0: with fewer samples than D the covariances are singular, and the
    square roots of their round-off eigenvalues would otherwise add up to ~1e-3
    (FID of a set with itself would come out as -1e-3 rather than 0).
    """
    mu1, mu2 = (np.asarray(m, dtype=np.float64).reshape(-1) for m in (mu1, mu2))
    s1, s2 = (np.asarray(s, dtype=np.float64) for s in (sigma1, sigma2))
    if (
        s1.shape != (mu1.size, mu1.size)
        or s2.shape != s1.shape
        or mu2.shape != mu1.shape
    ):
        raise ValueError(
            f"shapes mu1 {mu1.shape}, sigma1 {s1.shape}, mu2 {mu2.shape}, "
            f"sigma2 {s2.shape} do not agree"
        )
    s1, s2 = (s1 + s1.T) / 2, (s2 + s2.T) / 2
    w, v = np.linalg.eigh(s1)  # (D,), (D, D)
    s1_half = (v * np.sqrt(_drop_roundoff(w))) @ v.T  # (D, D)
    m = s1_half @ s2 @ s1_half  # (D, D), symmetric PSD
    tr_covmean = np.sqrt(_drop_roundoff(np.linalg.eigvalsh((m + m.T) / 2))).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)


class RunningStats:
    """Float64 running sums of feature vectors (as torchmetrics' FID keeps them):
    n, sum (D,) and sum of outer products (D, D); memory independent of n."""

    def __init__(self, dim: int = FEATURE_DIM):
        self.n = 0
        self.total = torch.zeros(dim, dtype=torch.float64)  # on the CPU
        self.outer = torch.zeros(dim, dim, dtype=torch.float64)

    def add(self, features: Tensor) -> None:
        """Add (B, D) features."""
        f = features.double().cpu()
        self.total += f.sum(dim=0)
        self.outer += f.t().mm(f)
        self.n += len(f)

    def stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean (D,) and unbiased covariance (D, D), float64."""
        return mean_cov(self.n, self.total, self.outer, "feature")


def mean_cov(
    n: int, total: Tensor, outer: Tensor, kind: str
) -> tuple[np.ndarray, np.ndarray]:
    """(mu (D,), sigma (D, D)) from n, sum (D,) and sum of outer products."""
    if n < 2:
        raise ValueError(f"FID needs >= 2 {kind} images, got {n}")
    mu = total.double().cpu() / n  # (D,)
    sigma = (outer.double().cpu() - n * torch.outer(mu, mu)) / (n - 1)  # (D, D)
    return mu.numpy(), sigma.numpy()


class FID:
    """FID between a real and a fake image set, fully offline.

    Wraps ``torchmetrics.image.fid.FrechetInceptionDistance(feature=2048,
    feature_extractor_weights_path=weights, normalize=False)``, which extracts
    the features and keeps float64 running sums; ``compute`` applies
    ``frechet_distance`` to them. Images are fed in batches of ``batch_size`` to
    bound memory. ``antialias`` is the resize to 299 (see ``load_inception``).

    >>> fid = FID("data/fid/inception-2015-12-05.pth")
    >>> fid.update(real_images, real=True)   # (N, C, H, W) uint8 or [0, 1] float
    >>> fid.update(fake_images, real=False)
    >>> fid.compute()
    """

    def __init__(
        self,
        weights: str | Path,
        *,
        device: str | torch.device = "cpu",
        batch_size: int = 32,
        antialias: bool = True,
    ) -> None:
        from torchmetrics.image.fid import FrechetInceptionDistance

        weights = existing_weights(Path(weights))
        self.batch_size = batch_size
        self.device = torch.device(device)
        with no_weight_download(download_error()):
            self.metric = FrechetInceptionDistance(
                feature=FEATURE_DIM,
                feature_extractor_weights_path=str(weights),
                normalize=False,
                antialias=antialias,
                reset_real_features=True,
            ).to(self.device)
        self.metric.inception.to(memory_format=torch.channels_last)  # faster

    @torch.no_grad()
    def update(self, images: Tensor, real: bool) -> None:
        """Add (N, C, H, W) uint8 or float-in-[0, 1] images, C in {1, 3}."""
        x = to_uint8_rgb(images)  # (N, 3, H, W) uint8
        batches = x.split(self.batch_size)
        desc = f"FID features ({'real' if real else 'generated'})"
        for batch in bar(batches, desc, total=len(batches), unit="batch"):
            self.metric.update(batch.to(self.device), real=real)

    def features(self, images: Tensor) -> Tensor:
        """(N, 2048) float32 Inception pool features on the CPU of (N, C, H, W)
        uint8 or [0, 1] float images, in batches of ``batch_size`` (for
        ``RunningStats``; the same features ``update`` adds)."""
        return inception_features(
            self.metric.inception, images, batch_size=self.batch_size
        )

    @property
    def n_real(self) -> int:
        return int(self.metric.real_features_num_samples)

    @property
    def n_fake(self) -> int:
        return int(self.metric.fake_features_num_samples)

    def stats(self, real: bool) -> tuple[np.ndarray, np.ndarray]:
        """Feature mean (D,) and unbiased covariance (D, D), float64."""
        m = self.metric
        if real:
            n, total, outer = self.n_real, m.real_features_sum, m.real_features_cov_sum
        else:
            n, total, outer = self.n_fake, m.fake_features_sum, m.fake_features_cov_sum
        return mean_cov(n, total, outer, "real" if real else "fake")

    def compute(self) -> float:
        """FID of the images added so far (needs at least 2 real and 2 fake).

        Same statistics as torchmetrics' ``compute``, but the distance is
        ``frechet_distance``: symmetric eigendecompositions instead of its
        general ``eigvals`` of a 2048 x 2048 product (faster on CPU), a float64
        result instead of float32, and FID(x, x) ~ 1e-13 instead of ~-1e-4.
        """
        return frechet_distance(*self.stats(real=True), *self.stats(real=False))

    def reset(self, *, keep_real: bool = False) -> None:
        """Forget the fake images (and the real ones unless ``keep_real``)."""
        self.metric.reset_real_features = not keep_real
        self.metric.reset()
