"""Stage coco_evaluate: Table 2 metrics of the COCO CVAE on the held-out split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import typer

from cvae.checkpoint import load_model
from cvae.clip import ClipEncoder, clip_score, tensor_to_pil
from cvae.clip_weights import RANDOM_INIT_WARNING, load_clip
from cvae.device import resolve_device
from cvae.errors import CVAEError
from cvae.evaluation import (
    comparison_grid,
    fid_to_reference,
    generation_grid,
    reconstruction_metrics,
)
from cvae.fid import FID
from cvae.io import check_writable, write_record
from cvae.lineage import flat_params
from cvae.longtext import LongTextData, load_longtext
from cvae.params import (
    FID_PROTOCOL_N,  # below it, FID is biased upward
    CocoEvaluate,
)
from cvae.sampling import generate_for, save_grid
from cvae.train import to_float_images
from stages._common import Info, load, stage_main

CLIP_SCORE_CAVEAT = (
    "CLIP score with RANDOM CLIP weights measures nothing semantic: compare it "
    "only across runs with the same random CLIP, never with published values"
)


def clip_scores(
    enc: ClipEncoder,
    val: LongTextData,
    prompt_vecs: torch.Tensor,
    prompt_images: torch.Tensor,
    recons: torch.Tensor,
    generated: torch.Tensor,
    *,
    normalize: bool,
    batch_size: int,
) -> dict:
    """CLIP score (100 * max(cos, 0), mean) of four image sets against their text.

    prompts: each prompt's generations vs the prompt; generated / recon / real:
    generations from, reconstructions of, and the held-out images themselves vs
    their caption 0 (real is the reference a perfect model would reach).
    """

    def embed(images: torch.Tensor) -> np.ndarray:
        return enc.embed_images(tensor_to_pil(images), batch_size=batch_size)

    n_per = len(prompt_images) // max(len(prompt_vecs), 1)
    texts = enc.embed_texts(val.captions, batch_size=batch_size, normalize=normalize)
    n = len(recons)
    return {
        "clip_score_prompts": float(
            clip_score(
                prompt_vecs.repeat_interleave(n_per, 0).numpy(), embed(prompt_images)
            ).mean()
        ),
        "clip_score_generated": float(clip_score(texts[:n], embed(generated)).mean()),
        "clip_score_recon": float(clip_score(texts[:n], embed(recons)).mean()),
        "clip_score_real": float(
            clip_score(texts[:n], embed(to_float_images(val.images[:n]))).mean()
        ),
        "clip_score_n": n,
    }


def coco_fid(
    weights: Path,
    device: torch.device,
    real: torch.Tensor,
    recons: torch.Tensor,
    generated: torch.Tensor,
    batch_size: int,
) -> dict:
    """FID of reconstructions and of generations against the held-out images."""
    fid = FID(weights, device=device, batch_size=batch_size)
    fid.update(real, real=True)
    ref = fid.stats(real=True)
    out = {
        "fid_recon": fid_to_reference(fid, ref, recons),
        "fid_generate": fid_to_reference(fid, ref, generated),
        "fid_n": len(real),
    }
    if len(real) < FID_PROTOCOL_N:
        out["fid_note"] = (
            f"FID on {len(real)} < {FID_PROTOCOL_N} images is biased upward: "
            "compare it only between runs on the same held-out set"
        )
    return out


LABELS_PX = 160  # width of the grids' label column (prompts, word-wrapped)

# The params behind this stage's outputs: its own and its ancestors' in dvc.yaml
# (tests/test_dvc_yaml.py checks the list), recorded in the info file so a report
# can tell outputs that are not from their revision's params.
LINEAGE = (
    "cpu_threads",
    "coco_data",
    "filter",
    "size",
    "shard.shard_size",
    "shard.image_format",
    "embed",
    "conditioning",
    "condition_on",
    "coco.model",
    "coco.train",
    "coco.evaluate",
)


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

    Everything that can fail (model, data, CLIP) is checked before the first
    output is written, so a failing run leaves the previous outputs unchanged.
    """
    device = resolve_device(params.device)
    model, meta = load_model(model_path, device, expect_arch="image")
    info = meta["info"]
    cond_dim = int(meta["config"]["cond_dim"])
    val = load_longtext(
        shards, text_emb, image_emb, condition_on=info["condition_on"], split="val"
    )
    if val.images.shape[-1] != meta["config"]["image_size"]:
        raise CVAEError(
            f"{model_path} is a {meta['config']['image_size']} px model but the shards "
            f"hold {val.images.shape[-1]} px images: re-run `dvc repro`"
        )
    if val.eval_conds.shape[1] != cond_dim:
        raise CVAEError(
            f"{model_path} takes {cond_dim}-d conditions but the embeddings hold "
            f"{val.eval_conds.shape[1]}-d vectors: re-run `dvc repro`"
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
    vecs = enc.embed_texts(prompts, normalize=bool(clip.get("normalize")))
    conds = [torch.from_numpy(v) for v in vecs]

    nrow, bs, seed = params.grid_n, params.batch_size, params.seed
    n_score = min(len(val.images), params.score_samples)
    metrics, recons = reconstruction_metrics(
        model, val.images, val.eval_conds, batch_size=bs, keep=max(nrow * 2, n_score)
    )
    gen = generation_grid(model, conds, nrow, seed=seed)
    generated = generate_for(model, val.eval_conds[:n_score], seed=seed, batch_size=bs)
    metrics.update(
        clip_scores(
            enc,
            val,
            torch.stack(conds) if conds else torch.zeros(0, cond_dim),
            gen,
            recons[:n_score],
            generated,
            normalize=bool(clip.get("normalize")),
            batch_size=bs,
        )
    )
    if fid_weights is not None:
        metrics.update(
            coco_fid(
                fid_weights,
                device,
                val.images[:n_score],
                recons[:n_score],
                generated,
                batch_size=bs,
            )
        )
    else:
        metrics["fid_recon"] = metrics["fid_generate"] = None  # off; never faked
    originals = to_float_images(val.images[: nrow * 2])
    save_grid(
        comparison_grid(originals, recons[: nrow * 2], nrow),
        recon_grid,
        nrow=nrow,
        row_labels=["original", "reconstructed"] * -(-len(originals) // nrow),
        label_width=LABELS_PX,
    )
    save_grid(gen, gen_grid, nrow=nrow, row_labels=prompts, label_width=LABELS_PX)
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


@stage_main
def main(
    shards: Path = typer.Option(..., help="shard folder"),
    text_emb: Path = typer.Option(..., help="caption embeddings parquet"),
    image_emb: Path = typer.Option(..., help="image embeddings parquet"),
    model: Path = typer.Option(..., help="model .safetensors from coco_train"),
    metrics: Path = typer.Option(..., help="output metrics JSON"),
    info: Info = None,
    recon_grid: Path = typer.Option(..., help="output reconstruction grid PNG"),
    gen_grid: Path = typer.Option(..., help="output generation grid PNG (row/prompt)"),
    fid_weights: Path = typer.Option(
        None, help="Inception weights from the fid_weights stage (omit: no FID)"
    ),
    params: Path = typer.Option(Path("params.yaml"), help="params file"),
) -> None:
    check_writable(metrics, recon_grid, gen_grid, info)  # before any work
    p = load(params)
    m = evaluate_coco(
        p.coco.evaluate,
        shards,
        text_emb,
        image_emb,
        model,
        recon_grid,
        gen_grid,
        fid_weights,
    )
    write_record(metrics, info, m, params=flat_params(p, LINEAGE))
    fid = (
        f", FID recon {m['fid_recon']:.1f} gen {m['fid_generate']:.1f} (n={m['fid_n']})"
        if m.get("fid_recon") is not None
        else ""
    )
    print(
        f"coco_evaluate: {m['size']} px {m['conditioning']} on {m['condition_on']}: "
        f"MSE {m['mse']:.2f} SSIM {m['ssim']:.4f} on {m['n']} val images{fid}, "
        f"CLIP score prompts {m['clip_score_prompts']:.2f} "
        f"(real {m['clip_score_real']:.2f})"
    )


if __name__ == "__main__":
    typer.run(main)
