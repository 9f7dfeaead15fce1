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
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from cvae.core import distributed, numerics
from cvae.core.errors import CVAEError
from cvae.data.batches import BatchSource
from cvae.models.discriminator import DiscriminatorConfig, ProjectionDiscriminator
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

    def _settings(self) -> dict[str, Any]:
        return super()._settings() | {
            f"adversarial.{k}": v for k, v in self.adversarial.model_dump().items()
        }

    def _extra_state(self) -> dict[str, Any]:
        return {
            "critic": self.critic.state_dict(),
            "critic_optimizer": self.critic_opt.state_dict(),
        }

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self.critic.load_state_dict(state["critic"])
        self.critic_opt.load_state_dict(state["critic_optimizer"])

    def _train_step(
        self, x: torch.Tensor, c: torch.Tensor, epoch: int
    ) -> dict[str, torch.Tensor]:
        zero = torch.zeros((), device=self.device)
        if epoch < self.adversarial.start_epoch:  # a plain VAE step
            return super()._train_step(x, c, epoch) | {"adv": zero, "critic": zero}
        terms, logits = self._step(x, c)  # one process: self.net is self.model
        fake = torch.sigmoid(logits.float())
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp):
            adv = -self.critic(fake, c).float().sum()
        lam = adaptive_weight(terms["recon"], adv, self.model.output_layer)
        total = terms["loss"] + lam * self.adversarial.weight * adv
        self.opt.zero_grad(set_to_none=True)
        (total / len(x)).backward()  # also reaches the critic: cleared below
        self.opt.step()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp):
            critic = hinge_critic_loss(
                self.critic(x, c).float(), self.critic(fake.detach(), c).float()
            )
        self.critic_opt.zero_grad(set_to_none=True)
        (critic / len(x)).backward()
        self.critic_opt.step()
        return terms | {"adv": adv.detach(), "critic": critic.detach()}
