"""Stage coco_evaluate: Table 2 metrics of the COCO CVAE on the held-out split."""

from __future__ import annotations

from pathlib import Path

import torch
import typer

from cvae.checkpoint import load_model
from cvae.clip import RANDOM_INIT_WARNING, load_clip
from cvae.device import resolve_device
from cvae.errors import CVAEError
from cvae.evaluation import comparison_grid, generation_grid, reconstruction_metrics
from cvae.io import write_json
from cvae.longtext import load_longtext
from cvae.sampling import save_grid
from cvae.train import to_float_images
from stages._common import load_params, stage_main


def evaluate_coco(
    params: dict,
    shards: Path,
    text_emb: Path,
    image_emb: Path,
    model_path: Path,
    recon_grid: Path,
    gen_grid: Path,
) -> dict:
    """MSE/SSIM of reconstructions on 'val', a reconstruction grid and generations.

    Everything that can fail (model, data, CLIP) is checked before the first
    output is written, so a failing run leaves the previous outputs unchanged.
    """
    device = resolve_device(params.get("device", "auto"))
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
    prompts = list(params.get("prompts", []))
    vecs = enc.embed_texts(prompts, normalize=bool(clip.get("normalize")))
    conds = [torch.from_numpy(v) for v in vecs]

    nrow = int(params.get("grid_n", 8))
    metrics, recons = reconstruction_metrics(
        model,
        val.images,
        val.eval_conds,
        batch_size=int(params.get("batch_size", 64)),
        keep=nrow * 2,
    )
    originals = to_float_images(val.images[: len(recons)])
    gen = generation_grid(model, conds, nrow, seed=int(params.get("seed", 0)))
    save_grid(comparison_grid(originals, recons, nrow), recon_grid, nrow=nrow)
    save_grid(gen, gen_grid, nrow=nrow)
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
            "clip_random_init": bool(clip.get("random_init")),
            "prompts": prompts,
            "fid": None,  # offline FID: see the evaluation issue; never a fake value
        }
    )
    if clip.get("random_init"):
        metrics["WARNING"] = RANDOM_INIT_WARNING
    return metrics


@stage_main
def main(
    shards: Path = typer.Option(..., help="shard folder"),
    text_emb: Path = typer.Option(..., help="caption embeddings parquet"),
    image_emb: Path = typer.Option(..., help="image embeddings parquet"),
    model: Path = typer.Option(..., help="model .safetensors from coco_train"),
    metrics: Path = typer.Option(..., help="output metrics JSON"),
    recon_grid: Path = typer.Option(..., help="output reconstruction grid PNG"),
    gen_grid: Path = typer.Option(..., help="output generation grid PNG (row/prompt)"),
    params: Path = typer.Option(Path("params.yaml"), help="params file"),
) -> None:
    p = load_params("coco", params).get("evaluate", {})
    m = evaluate_coco(p, shards, text_emb, image_emb, model, recon_grid, gen_grid)
    write_json(metrics, m)
    print(
        f"coco_evaluate: {m['size']} px {m['conditioning']} on {m['condition_on']}: "
        f"MSE {m['mse']:.2f} SSIM {m['ssim']:.4f} on {m['n']} val images"
    )


if __name__ == "__main__":
    typer.run(main)
