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

import numpy as np
import torch
from torch import nn

from cvae.errors import CVAEError

COV_JITTER = 1e-6  # added to each covariance's diagonal (the fit's reg_covar)


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
        """Fit each class's mixture to its rows of z (N, L) by EM (scikit-learn,
        full covariances, k-means initialisation seeded with ``seed``)."""
        from sklearn.mixture import GaussianMixture

        k, m, d = self.means.shape
        if z.ndim != 2 or z.shape[1] != d or len(z) != len(labels):
            raise CVAEError(
                f"prior fit needs z (N, {d}) and N labels, got {tuple(z.shape)} "
                f"and {len(labels)}"
            )
        zs = z.double().cpu().numpy()
        ys = labels.cpu().numpy()
        for c in range(k):
            rows = zs[ys == c]
            if len(rows) < max(m, 2):
                raise CVAEError(
                    f"class {c} has {len(rows)} training images: too few for "
                    f"{m} mixture components"
                )
            gmm = GaussianMixture(
                n_components=m,
                covariance_type="full",
                reg_covar=COV_JITTER,
                random_state=seed,
            ).fit(rows)
            order = np.argsort(-gmm.weights_, kind="stable")  # heaviest first
            self.weights[c] = torch.from_numpy(gmm.weights_[order]).float()
            self.means[c] = torch.from_numpy(gmm.means_[order]).float()
            chol = np.linalg.cholesky(gmm.covariances_[order])  # (M, L, L)
            self.scale_tril[c] = torch.from_numpy(chol).float()
        self.fitted.fill_(1)

    @torch.no_grad()
    def sample(
        self, c: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """z ~ p(z | c) for labels c (B,), drawn on the CPU: (B, L) float32.

        First the component m ~ Categorical(pi[c]), then z = mean[c, m] +
        L[c, m] @ eps with eps ~ N(0, I); both from ``generator``.
        """
        if not self.is_fitted:
            raise CVAEError("the model's prior was never fitted: retrain the model")
        c = c.cpu().long()
        w, mean, tril = self.weights.cpu(), self.means.cpu(), self.scale_tril.cpu()
        comp = torch.multinomial(w[c], 1, generator=generator).squeeze(1)  # (B,)
        eps = torch.randn((len(c), mean.shape[-1]), generator=generator)  # (B, L)
        scale = tril[c, comp]  # (B, L, L)
        return mean[c, comp] + (scale @ eps.unsqueeze(-1)).squeeze(-1)
