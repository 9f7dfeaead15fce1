"""Training with an adversarial reconstruction term (the VAE-GAN of
``cvae.models.vaegan``): the :class:`~cvae.training.trainer.Trainer` loop with a
discriminator stepped after every decoder step.

Per batch, with reconstructions x' = decode(z, c), z ~ q(z | x, c):

    decoder  min  recon + beta * KL + lambda * weight * adv,   adv = -sum D(x', c)
    critic   min  sum relu(1 - D(x, c)) + sum relu(1 + D(x', c))      (hinge)

``lambda`` is VQGAN's adaptive weight (Esser et al., 2021): the ratio of the
gradient norms of recon and adv at the decoder's output layer, so that
``weight`` sets the adversarial gradient as a fraction of the reconstruction
one whatever the loss scales. Both terms start at epoch ``start_epoch`` (the
first epochs learn a plain VAE; VQGAN's ``disc_start``). The discriminator and
its optimiser travel in the resume state, not in the model file.

With ``prior_samples`` the critic also judges decodes of latents drawn from a
prior, as in Larsen et al. (2016), so that the decoder learns to draw real
images from the latents it is sampled at, not only from posterior ones:

    z_p ~ N(m_c, S_c),  x_p = decode(z_p, c)
    adv     = -(sum D(x', c) + sum D(x_p, c)) / 2
    critic  = sum relu(1 - D(x, c))
              + (sum relu(1 + D(x', c)) + sum relu(1 + D(x_p, c))) / 2

(m_c, S_c) is the mean and covariance of the posterior means mu(x, c) of class
c over the previous epoch's training steps (:class:`PosteriorMoments`; the
encoder changes during that epoch): one Gaussian per class, the moments of what
the fitted mixture prior is later fitted to. The first epoch has none, so its
critic sees reconstructions only.

With ``mismatch`` other than ``none`` the critic also learns to reject real
images under a wrong label c_w != c (the matching-aware discriminator of Reed et
al. 2016, GAN-CLS), so that its score judges whether an image shows its class,
not only whether it looks real. In general the critic's loss is its real term
plus the mean of the negatives' hinge terms (reconstructions, prior decodes,
wrong labels):

    critic  = sum relu(1 - D(x, c))
              + (sum relu(1 + D(x', c)) + sum relu(1 + D(x, c_w))) / 2

``uniform`` draws c_w uniformly from the other classes; ``hard`` draws it
towards the classes the critic currently finds most plausible for x (hard
negatives, as in Robinson et al. 2021's contrastive sampling), so that the
critic spends its capacity on the boundaries between confusable classes
(T-shirt/top and Shirt, Pullover and Coat) rather than on easy ones:

    p(c_w = k | x, c) = exp D(x, k) / sum_{j != c} exp D(x, j),   k != c
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from cvae.core import distributed, numerics
from cvae.core.errors import CVAEError
from cvae.data.batches import BatchSource
from cvae.models.discriminator import DiscriminatorConfig, ProjectionDiscriminator
from cvae.models.prior import COV_JITTER
from cvae.models.vaegan import VAEGANCVAE
from cvae.params.schema import Adversarial, TrainParams
from cvae.training.trainer import Trainer

ADAPTIVE_EPS = 1e-4  # VQGAN's: keeps the ratio finite when adv's gradient vanishes
ADAPTIVE_MAX = 1e4  # VQGAN's clamp of the adaptive weight
CRITIC_BETAS = (0.5, 0.9)  # Adam betas of the critic (the usual GAN setting)


def adaptive_weight(
    recon: torch.Tensor, adv: torch.Tensor, layer: torch.nn.Module
) -> torch.Tensor:
    """||d recon / d W|| / (||d adv / d W|| + eps) at the output layer's weight W,
    clamped to [0, ADAPTIVE_MAX], detached (a scalar)."""
    w = layer.weight
    g_rec = torch.autograd.grad(recon, w, retain_graph=True)[0]
    g_adv = torch.autograd.grad(adv, w, retain_graph=True)[0]
    ratio = g_rec.norm() / (g_adv.norm() + ADAPTIVE_EPS)
    return ratio.clamp(0, ADAPTIVE_MAX).detach()


def hinge_critic_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """sum relu(1 - D(real)) + sum relu(1 + D(fake)) over the batch."""
    return F.relu(1 - real).sum() + F.relu(1 + fake).sum()


class PosteriorMoments:
    """Per-class sums of posterior means over an epoch, and the Gaussian
    N(m_c, S_c) per class they give (float64 sums; float32 samples).

        m_c = sum mu / n_c,   S_c = sum mu mu^T / n_c - m_c m_c^T + jitter * I
    """

    def __init__(self, num_classes: int, latent_dim: int, device: torch.device):
        k, d = num_classes, latent_dim
        f64 = {"dtype": torch.float64, "device": device}
        self.count = torch.zeros(k, **f64)
        self.sum = torch.zeros(k, d, **f64)
        self.outer = torch.zeros(k, d, d, **f64)

    def reset(self) -> None:
        """Start a new epoch's sums."""
        for t in (self.count, self.sum, self.outer):
            t.zero_()

    def add(self, mu: torch.Tensor, c: torch.Tensor) -> None:
        """Accumulate posterior means mu (B, L) of labels c (B,)."""
        mu = mu.detach().double()
        self.count.index_add_(0, c, torch.ones_like(c, dtype=torch.float64))
        self.sum.index_add_(0, c, mu)
        self.outer.index_add_(0, c, mu.unsqueeze(2) * mu.unsqueeze(1))

    def gaussians(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(means (K, L), Cholesky factors (K, L, L)) of each class's Gaussian."""
        few = (self.count < 2).nonzero().flatten().tolist()
        if few:
            k = few[0]
            raise CVAEError(
                f"adversarial.prior_samples needs 2 or more training images of every "
                f"class per epoch; class {k} had {int(self.count[k])}: train on "
                "every class or set adversarial.prior_samples: false"
            )
        n = self.count.view(-1, 1)
        mean = self.sum / n
        cov = self.outer / n.unsqueeze(2) - mean.unsqueeze(2) * mean.unsqueeze(1)
        eye = torch.eye(cov.shape[1], dtype=cov.dtype, device=cov.device)
        chol, info = torch.linalg.cholesky_ex(cov + COV_JITTER * eye)
        if bool((info > 0).any()):
            raise CVAEError(
                "the posterior means' covariance of a class is not positive "
                "definite: set adversarial.prior_samples: false"
            )
        return mean.float(), chol.float()

    def state(self) -> dict[str, torch.Tensor]:
        """The sums, for a resume state."""
        return {"count": self.count, "sum": self.sum, "outer": self.outer}

    def load(self, state: dict[str, torch.Tensor]) -> None:
        """Restore :meth:`state`'s sums in place (this object's device; a
        state of another shape raises RuntimeError)."""
        for name, t in self.state().items():
            t.copy_(state[name])


def wrong_labels(c: torch.Tensor, num_classes: int) -> torch.Tensor:
    """A label other than c (B,) for each entry, uniform over the other classes."""
    other = torch.randint(1, num_classes, c.shape, device=c.device)
    return (c + other) % num_classes


def hard_wrong_labels(scores: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """A label k != c_i for each row i of ``scores`` (B, K), drawn with
    probability exp(scores[i, k]) / sum_{j != c_i} exp(scores[i, j]) (B,)."""
    masked = scores.detach().float().scatter(1, c.unsqueeze(1), float("-inf"))
    return torch.multinomial(masked.softmax(1), 1).squeeze(1)


class AdversarialTrainer(Trainer):
    """Trainer + a projection discriminator (see module doc). One process only."""

    terms = ("loss", "recon", "kl", "adv", "critic")

    def __init__(
        self,
        model: VAEGANCVAE,
        cfg: TrainParams,
        data: BatchSource,
        *,
        adversarial: Adversarial,
        **kwargs: Any,
    ):
        if distributed.info_from_env().enabled:  # before joining a process group
            raise CVAEError(
                "the adversarial model trains in one process: run it without torchrun"
            )
        super().__init__(model, cfg, data, **kwargs)
        self.adversarial = adversarial
        cfg_d = DiscriminatorConfig(
            image_size=model.config.image_size,
            in_channels=model.config.in_channels,
            channels=list(adversarial.channels),
            num_classes=model.config.num_classes,
        )
        self.critic = ProjectionDiscriminator(cfg_d).to(self.device)
        self.critic_opt = numerics.adam(
            self.critic.parameters(), lr=adversarial.lr, betas=CRITIC_BETAS
        )
        k = model.config.num_classes
        if adversarial.mismatch != "none" and k < 2:
            raise CVAEError(
                "adversarial.mismatch needs 2 or more classes: set it to none"
            )
        # this epoch's sums, and the previous epoch's Gaussians (None: none yet)
        self.moments: PosteriorMoments | None = None
        self.proposal: tuple[torch.Tensor, torch.Tensor] | None = None
        if adversarial.prior_samples:
            self.moments = PosteriorMoments(k, model.config.latent_dim, self.device)

    def _settings(self) -> dict[str, Any]:
        return super()._settings() | {
            f"adversarial.{k}": v for k, v in self.adversarial.model_dump().items()
        }

    def _extra_state(self) -> dict[str, Any]:
        extra = {
            "critic": self.critic.state_dict(),
            "critic_optimizer": self.critic_opt.state_dict(),
        }
        if self.moments is not None:  # the finished epoch's sums
            extra["posterior_moments"] = self.moments.state()
        return extra

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self.critic.load_state_dict(state["critic"])
        self.critic_opt.load_state_dict(state["critic_optimizer"])
        if self.moments is not None:
            self.moments.load(state["posterior_moments"])

    def _run_epoch(self, epoch: int, check_every: int) -> None:
        if self.moments is not None:
            if epoch > 0:  # the previous epoch's sums give this epoch's proposal
                self.proposal = self.moments.gaussians()
            self.moments.reset()
        super()._run_epoch(epoch, check_every)

    def _step(
        self, x: torch.Tensor, c: torch.Tensor, *, train: bool = True
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """Trainer's step; a training step's posterior means also join this
        epoch's sums (``prior_samples``)."""
        terms, logits, mu = super()._step(x, c, train=train)
        if train and self.moments is not None:
            self.moments.add(mu, c)
        return terms, logits, mu

    def _prior_decodes(self, c: torch.Tensor) -> torch.Tensor:
        """x_p = decode(z_p, c) in [0, 1], z_p ~ N(m_c, S_c) (B, C, H, W)."""
        assert self.proposal is not None
        mean, chol = self.proposal
        eps = torch.randn(len(c), mean.shape[1], 1, device=self.device)
        z = mean[c] + (chol[c] @ eps).squeeze(2)  # (B, L)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp):
            logits = self.model.decode_logits(z, c)
        return torch.sigmoid(logits.float())

    def _wrong_labels(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """c_w != c for real images x: uniform, or drawn from the critic's
        scores of every class (``mismatch: hard``)."""
        if self.adversarial.mismatch == "uniform":
            return wrong_labels(c, self.model.config.num_classes)
        assert self.adversarial.mismatch == "hard"
        # in training mode this also takes one more spectral-norm power step;
        # its vectors are in the critic's state, so a resume stays exact
        with (
            torch.no_grad(),
            torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp),
        ):
            scores = self.critic.class_scores(x)
        return hard_wrong_labels(scores, c)

    def _train_step(
        self, x: torch.Tensor, c: torch.Tensor, epoch: int
    ) -> dict[str, torch.Tensor]:
        zero = torch.zeros((), device=self.device)
        if epoch < self.adversarial.start_epoch:  # a plain VAE step
            return super()._train_step(x, c, epoch) | {"adv": zero, "critic": zero}
        terms, logits, _ = self._step(x, c)  # one process: self.net is self.model
        fakes = [torch.sigmoid(logits.float())]  # reconstructions x'
        if self.proposal is not None:
            fakes.append(self._prior_decodes(c))  # prior decodes x_p
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp):
            adv = -sum(self.critic(f, c).float().sum() for f in fakes) / len(fakes)
        lam = adaptive_weight(terms["recon"], adv, self.model.output_layer)
        total = terms["loss"] + lam * self.adversarial.weight * adv
        self.opt.zero_grad(set_to_none=True)
        (total / len(x)).backward()  # also reaches the critic: cleared below
        self.opt.step()
        negatives = [(f.detach(), c) for f in fakes]
        if self.adversarial.mismatch != "none":  # real images, another label
            negatives.append((x, self._wrong_labels(x, c)))
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp):
            real = self.critic(x, c).float()
            critic = sum(
                hinge_critic_loss(real, self.critic(image, label).float())
                for image, label in negatives
            ) / len(negatives)
        self.critic_opt.zero_grad(set_to_none=True)
        (critic / len(x)).backward()
        self.critic_opt.step()
        return terms | {"adv": adv.detach(), "critic": critic.detach()}
