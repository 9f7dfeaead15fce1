"""Scores of a COCO CVAE on its held-out split, computed in one streaming pass.

Each held-out batch is reconstructed (MSE, SSIM) and, for the first
``n_score`` images, also generated from its condition; FID (float64 Inception
feature sums) and CLIP scores (one score per image) accumulate batch by batch,
so memory does not grow with the split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from cvae.clip.encoder import ClipEncoder, clip_score, tensor_to_pil
from cvae.clip.weights import RANDOM_INIT_WARNING, load_clip
from cvae.core.device import resolve_device
from cvae.core.errors import CVAEError
from cvae.core.progress import bar
from cvae.data.batches import HeldOut
from cvae.data.pairs import shard_split
from cvae.evaluation.fid import FID, RunningStats, frechet_distance
from cvae.evaluation.sampling import save_grid
from cvae.evaluation.scores import ReconstructionMeter, comparison_grid, generation_grid
from cvae.models import ConditionalVAE
from cvae.models.base import to_float_images
from cvae.models.checkpoint import load_model
from cvae.params.schema import FID_PROTOCOL_N, CocoEvaluate


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


CLIP_SCORE_CAVEAT = (
    "CLIP score with RANDOM CLIP weights measures nothing semantic: compare it "
    "only across runs with the same random CLIP, never with published values"
)

LABELS_PX = 160  # width of the grids' label column (prompts, word-wrapped)


def evaluate_coco(
    params: CocoEvaluate,
    shards: Path,
    text_emb: Path,
    image_emb: Path,
    model_path: Path,
    recon_grid: Path,
    gen_grid: Path,
    fid_weights: Path | None = None,
) -> dict:
    """MSE/SSIM of reconstructions on 'val', a reconstruction grid and generations,
    CLIP scores, and FID when ``fid_weights`` is given.

    The 'val' split is read from the shards batch by batch and every score is
    accumulated as it goes, so memory does not grow with the split.

    The inputs (model, data, CLIP) are all read and checked before the first
    output is written.
    """
    device = resolve_device(params.device)
    model, meta = load_model(model_path, device, expect_arch="image")
    info = meta["info"]
    cond_dim = int(meta["config"]["cond_dim"])
    val, val_conds = shard_split(
        shards, text_emb, image_emb, condition_on=info["condition_on"], split="val"
    )
    side = val.image_shape()[-1]
    if side != meta["config"]["image_size"]:
        raise CVAEError(
            f"{model_path} is a {meta['config']['image_size']} px model but the shards "
            f"hold {side} px images: re-run `dvc repro`"
        )
    trained_on = info["clip"]["model"]
    if val_conds.clip["model"] != trained_on:
        raise CVAEError(
            f"{text_emb if info['condition_on'] == 'text' else image_emb} was made "
            f"with CLIP {val_conds.clip['model']} but {model_path} was trained on "
            f"CLIP {trained_on} vectors: re-run coco_embed and coco_train "
            "(dvc repro coco_train)"
        )
    if val_conds.eval_conds.shape[1] != cond_dim:
        raise CVAEError(
            f"{model_path} takes {cond_dim}-d conditions but the embeddings hold "
            f"{val_conds.eval_conds.shape[1]}-d vectors: re-run `dvc repro`"
        )

    clip = info["clip"]
    enc = load_clip(
        clip["model"],
        clip["pretrained"] or "none",
        str(device),
        seed=int(clip.get("seed") or 0),
    )
    if enc.dim != cond_dim:
        raise CVAEError(
            f"CLIP {clip['model']} gives {enc.dim}-d vectors but {model_path} takes "
            f"{cond_dim}-d conditions: retrain the model (dvc repro)"
        )
    prompts = list(params.prompts)
    normalize = bool(clip.get("normalize"))
    vecs = enc.embed_texts(prompts, normalize=normalize)
    conds = [torch.from_numpy(v) for v in vecs]

    nrow, bs, seed = params.grid_n, params.batch_size, params.seed
    n_score = min(len(val), params.score_samples)
    fid = FID(fid_weights, device=device, batch_size=bs) if fid_weights else None
    scores = HeldOutScores(enc, fid, normalize=normalize, batch_size=bs)
    metrics, originals, recons = score_held_out(
        model, val, scores, n_score=n_score, keep=nrow * 2, batch_size=bs, seed=seed
    )
    grid = generation_grid(model, conds, nrow, seed=seed)
    metrics["clip_score_prompts"] = (
        prompt_score(enc, vecs, grid, bs) if len(prompts) else float("nan")
    )
    metrics.update(scores.clip_scores(val_conds.captions[:n_score]))
    if fid is not None:
        metrics.update(scores.fids())
    else:
        metrics["fid_recon"] = metrics["fid_generate"] = None  # off; never faked
    save_grid(
        comparison_grid(originals, recons, nrow),
        recon_grid,
        nrow=nrow,
        row_labels=["original", "reconstructed"] * -(-len(originals) // nrow),
        label_width=LABELS_PX,
    )
    save_grid(grid, gen_grid, nrow=nrow, row_labels=prompts, label_width=LABELS_PX)
    metrics.update(
        {
            "size": meta["config"]["image_size"],
            "conditioning": meta["config"]["conditioning"],
            "condition_on": info["condition_on"],
            "latent_dim": meta["config"]["latent_dim"],
            "epochs": info.get("epochs"),
            "n_train": info.get("n_train"),
            "clip_model": clip["model"],
            "clip_pretrained": clip["pretrained"],
            "clip_sha256": clip.get("sha256"),
            "clip_random_init": bool(clip.get("random_init")),
            "prompts": prompts,
        }
    )
    if clip.get("random_init"):
        metrics["WARNING"] = RANDOM_INIT_WARNING
        metrics["clip_score_caveat"] = CLIP_SCORE_CAVEAT
    return metrics
