"""Scores of a COCO CVAE on its held-out split, computed in one streaming pass.

Each held-out batch is reconstructed (MSE, SSIM) and, for the first
``n_score`` images, also generated from its condition; FID (float64 Inception
feature sums) and CLIP scores (one score per image) accumulate batch by batch,
so memory does not grow with the split.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from cvae.batches import HeldOut, to_float_images
from cvae.clip import ClipEncoder, clip_score, tensor_to_pil
from cvae.evaluation import ReconstructionMeter
from cvae.fid import FID, RunningStats, frechet_distance
from cvae.models import ConditionalVAE
from cvae.params import FID_PROTOCOL_N  # below it, FID is biased upward
from cvae.progress import bar


class HeldOutScores:
    """FID statistics and CLIP scores of the held-out images, their
    reconstructions and generations from their conditions, batch by batch: memory
    does not grow with the number of images (float64 feature sums for FID, one
    (N,) score per set for CLIP)."""

    SETS = ("real", "recon", "generated")

    def __init__(
        self, enc: ClipEncoder, fid: FID | None, *, normalize: bool, batch_size: int
    ) -> None:
        self.enc, self.fid = enc, fid
        self.normalize, self.batch_size = normalize, batch_size
        self.image_vecs: dict[str, list[np.ndarray]] = {k: [] for k in self.SETS}
        self.stats = {k: RunningStats() for k in self.SETS} if fid else {}

    def update(self, **images: torch.Tensor) -> None:
        """real / recon / generated: (B, 3, S, S) uint8 or float in [0, 1]."""
        for name, x in images.items():
            self.image_vecs[name].append(
                self.enc.embed_images(tensor_to_pil(x), batch_size=self.batch_size)
            )
            if self.fid is not None:
                self.stats[name].add(self.fid.features(x))

    def clip_scores(self, captions: list[str]) -> dict:
        """CLIP score (100 * max(cos, 0), mean) of each set against the caption 0
        of its image (real: the reference a perfect model would reach)."""
        texts = self.enc.embed_texts(
            captions, batch_size=self.batch_size, normalize=self.normalize
        )
        vecs = {k: np.concatenate(v) for k, v in self.image_vecs.items()}
        n = len(vecs["real"])
        return {
            "clip_score_generated": float(
                clip_score(texts[:n], vecs["generated"]).mean()
            ),
            "clip_score_recon": float(clip_score(texts[:n], vecs["recon"]).mean()),
            "clip_score_real": float(clip_score(texts[:n], vecs["real"]).mean()),
            "clip_score_n": n,
        }

    def fids(self) -> dict:
        """FID of reconstructions and of generations against the held-out images."""
        ref = self.stats["real"].stats()
        n = self.stats["real"].n
        out = {
            "fid_recon": frechet_distance(*ref, *self.stats["recon"].stats()),
            "fid_generate": frechet_distance(*ref, *self.stats["generated"].stats()),
            "fid_n": n,
        }
        if n < FID_PROTOCOL_N:
            out["fid_note"] = (
                f"FID on {n} < {FID_PROTOCOL_N} images is biased upward: "
                "compare it only between runs on the same held-out set"
            )
        return out


def prompt_score(
    enc: ClipEncoder, prompt_vecs: np.ndarray, generated: torch.Tensor, batch_size: int
) -> float:
    """CLIP score of each prompt's generations (rows of ``generated``, equally
    many per prompt, in prompt order) against the prompt."""
    n_per = len(generated) // max(len(prompt_vecs), 1)
    images = enc.embed_images(tensor_to_pil(generated), batch_size=batch_size)
    return float(clip_score(np.repeat(prompt_vecs, n_per, axis=0), images).mean())


@torch.no_grad()
def score_held_out(
    model: ConditionalVAE,
    val: HeldOut,
    scores: HeldOutScores,
    *,
    n_score: int,
    keep: int,
    batch_size: int,
    seed: int,
) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor]:
    """Reconstruction metrics of every held-out image; FID / CLIP sets of the
    first ``n_score`` (real, reconstructed, generated from its condition: batch
    k's z from a CPU generator seeded ``seed + k``).

    Returns (metrics, the first ``keep`` originals, their reconstructions),
    images (keep, 3, S, S) in [0, 1].
    """
    device = next(model.parameters()).device
    meter = ReconstructionMeter()
    originals: list[torch.Tensor] = []
    recons: list[torch.Tensor] = []
    seen = 0
    steps = -(-len(val) // batch_size)
    batches = bar(val.ordered(batch_size), "evaluate", total=steps, unit="batch")
    for k, (x8, c) in enumerate(batches):
        x = to_float_images(x8)  # (B, 3, S, S) in [0, 1]
        r = model.reconstruct(x.to(device), c.to(device)).float().cpu()
        meter.update(r, x)
        if seen < keep:
            originals.append(x[: keep - seen])
            recons.append(r[: keep - seen])
        m = min(len(x), n_score - seen)  # of this batch, the scored images
        if m > 0:
            gen = torch.Generator().manual_seed(seed + k)
            g = model.sample(c[:m].to(device), generator=gen).float().cpu()
            scores.update(real=x8[:m], recon=r[:m], generated=g)
        seen += len(x)
    return meter.result(), torch.cat(originals), torch.cat(recons)
