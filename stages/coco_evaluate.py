"""Stage coco_evaluate: Table 2 metrics of the COCO CVAE on the held-out split."""

from __future__ import annotations

from pathlib import Path

import torch
import typer

from cvae.checkpoint import load_model
from cvae.clip_weights import RANDOM_INIT_WARNING, load_clip
from cvae.coco_evaluation import HeldOutScores, prompt_score, score_held_out
from cvae.device import resolve_device
from cvae.errors import CVAEError
from cvae.evaluation import comparison_grid, generation_grid
from cvae.fid import FID
from cvae.io import check_writable, write_record
from cvae.lineage import flat_params
from cvae.longtext import shard_split
from cvae.params import CocoEvaluate
from cvae.sampling import save_grid
from stages._common import Info, load, stage_main

CLIP_SCORE_CAVEAT = (
    "CLIP score with RANDOM CLIP weights measures nothing semantic: compare it "
    "only across runs with the same random CLIP, never with published values"
)


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

    The 'val' split is read from the shards batch by batch and every score is
    accumulated as it goes, so memory does not grow with the split.

    Everything that can fail (model, data, CLIP) is checked before the first
    output is written, so a failing run leaves the previous outputs unchanged.
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
