"""A per-class Gaussian mixture fitted to the training posteriors: p(z | c).

A VAE trained against N(0, I) rarely fills it: the aggregate posterior
q(z | c) = E_x q(z | x, c) leaves holes, and z ~ N(0, I) decodes to blurry or
off-class images there. RAE (Ghosh et al., 2020) and the two-stage VAE (Dai &
Wipf, 2019) sample instead from a density fitted, after training, to the
encodings of the training set. Here that density is one Gaussian mixture per
class, fitted to the posterior means mu(x, c) of that class's images:

    p(z | c) = sum_m pi[c, m] N(z; mean[c, m], L[c, m] L[c, m]^T)

Shape letters: B batch, K classes, M components per class, L latent size.
Buffers: ``weights`` (K, M), ``means`` (K, M, L), ``scale_tril`` (K, M, L, L)
(lower-triangular Cholesky factors) and ``fitted`` (a scalar 0/1), so the fitted
density is part of the model's state dict and travels in its safetensors file.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cvae.core.errors import CVAEError

COV_JITTER = 1e-6  # added to each covariance's diagonal (keeps it invertible)
EM_MAX_ITER = 100  # EM rounds at most
EM_TOL = 1e-3  # stop when the mean log-likelihood per point gains less (sklearn)


class ClassGMMPrior(nn.Module):
    """p(z | c): a Gaussian mixture of ``components`` per class (see module doc)."""

    def __init__(self, *, num_classes: int, components: int, latent_dim: int):
        super().__init__()
        k, m, d = num_classes, components, latent_dim
        self.register_buffer("weights", torch.full((k, m), 1.0 / m))  # (K, M)
        self.register_buffer("means", torch.zeros(k, m, d))  # (K, M, L)
        eye = torch.eye(d).expand(k, m, d, d).clone()
        self.register_buffer("scale_tril", eye)  # (K, M, L, L)
        self.register_buffer("fitted", torch.zeros((), dtype=torch.uint8))

    @property
    def is_fitted(self) -> bool:
        return bool(self.fitted.item())

    @torch.no_grad()
    def fit(self, z: torch.Tensor, labels: torch.Tensor, *, seed: int) -> None:
        """Fit each class's mixture to its rows of z (N, L) by EM (``em_fit``)."""
        k, m, d = self.means.shape
        if z.ndim != 2 or z.shape[1] != d or len(z) != len(labels):
            raise CVAEError(
                f"prior fit needs z (N, {d}) and N labels, got {tuple(z.shape)} "
                f"and {len(labels)}"
            )
        z, labels = z.double().cpu(), labels.cpu()
        for c in range(k):
            rows = z[labels == c]
            if len(rows) < max(m, 2):
                raise CVAEError(
                    f"class {c} has {len(rows)} training images: too few for "
                    f"{m} mixture components"
                )
            gen = torch.Generator().manual_seed(seed * 1000 + c)
            w, mean, cov = em_fit(rows, m, generator=gen)
            order = torch.argsort(-w, stable=True)  # heaviest first
            self.weights[c] = w[order].float()
            self.means[c] = mean[order].float()
            self.scale_tril[c] = torch.linalg.cholesky(cov[order]).float()
        self.fitted.fill_(1)

    @torch.no_grad()
    def sample(
        self,
        c: torch.Tensor,
        generator: torch.Generator | None = None,
        *,
        temperature: float,
    ) -> torch.Tensor:
        """z ~ p(z | c) for labels c (B,), drawn on the CPU: (B, L) float32.

        First the component m ~ Categorical(pi[c]), then z = mean[c, m] +
        temperature * L[c, m] @ eps with eps ~ N(0, I); both from ``generator``
        (temperature 1: the fitted density; below 1: closer to the means).
        """
        if not self.is_fitted:
            raise CVAEError("the model's prior was never fitted: retrain the model")
        c = c.cpu().long()
        w, mean, tril = self.weights.cpu(), self.means.cpu(), self.scale_tril.cpu()
        comp = torch.multinomial(w[c], 1, generator=generator).squeeze(1)  # (B,)
        eps = torch.randn((len(c), mean.shape[-1]), generator=generator)  # (B, L)
        scale = tril[c, comp]  # (B, L, L)
        return mean[c, comp] + temperature * (scale @ eps.unsqueeze(-1)).squeeze(-1)


def kmeans_pp(x: torch.Tensor, m: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: m rows of x (N, L), each drawn with probability
    proportional to its squared distance from the rows already drawn. (m, L)."""
    first = torch.randint(len(x), (1,), generator=generator)
    centres = [x[first[0]]]
    dist = ((x - centres[0]) ** 2).sum(1)  # (N,)
    for _ in range(1, m):
        i = torch.multinomial(dist.clamp_min(0) + 1e-12, 1, generator=generator)[0]
        centres.append(x[i])
        dist = torch.minimum(dist, ((x - x[i]) ** 2).sum(1))
    return torch.stack(centres)


def em_fit(
    x: torch.Tensor, m: int, *, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Maximum-likelihood Gaussian mixture of x (N, L), float64, by EM.

    Means start at k-means++ rows, covariances at the data's, weights equal;
    stops when the mean log-likelihood gains less than ``EM_TOL`` or after
    ``EM_MAX_ITER`` rounds. Returns (weights (M,), means (M, L), covs (M, L, L)).

        E: r[m, n] = pi_m N(x_n; mu_m, S_m) / sum_j pi_j N(x_n; mu_j, S_j)
        M: pi_m = mean_n r[m, n], mu_m = sum_n r x_n / N_m,
           S_m = sum_n r (x_n - mu_m)(x_n - mu_m)^T / N_m + jitter * I
    """
    n, d = x.shape
    eye = torch.eye(d, dtype=x.dtype) * COV_JITTER
    means = kmeans_pp(x, m, generator)  # (M, L)
    covs = (torch.cov(x.T, correction=0) + eye).expand(m, d, d).clone()
    weights = torch.full((m,), 1.0 / m, dtype=x.dtype)
    last = -math.inf
    for _ in range(EM_MAX_ITER):
        chol = torch.linalg.cholesky(covs)  # (M, L, L)
        diff = x.unsqueeze(0) - means.unsqueeze(1)  # (M, N, L)
        sol = torch.linalg.solve_triangular(chol, diff.transpose(1, 2), upper=False)
        maha = sol.pow(2).sum(1)  # (M, N)
        logdet = 2 * chol.diagonal(dim1=1, dim2=2).log().sum(1)  # (M,)
        logp = weights.log().unsqueeze(1) - 0.5 * (
            maha + logdet.unsqueeze(1) + d * math.log(2 * math.pi)
        )  # (M, N)
        total = torch.logsumexp(logp, 0)  # (N,)
        resp = (logp - total).exp()  # (M, N)
        nk = resp.sum(1) + 1e-12  # (M,)
        weights = nk / n
        means = resp @ x / nk.unsqueeze(1)
        diff = x.unsqueeze(0) - means.unsqueeze(1)
        weighted = diff * resp.unsqueeze(2)  # (M, N, L)
        covs = weighted.transpose(1, 2) @ diff / nk.view(m, 1, 1)  # (M, L, L)
        covs = covs + eye
        ll = total.mean().item()
        if ll - last < EM_TOL:
            break
        last = ll
    return weights, means, covs
