"""Stage coco_evaluate: Table 2 metrics of the COCO CVAE on the held-out split."""

from __future__ import annotations

from pathlib import Path

import typer

from cvae.core.files import check_writable, write_record
from cvae.evaluation.coco import (
    evaluate_coco,
)
from cvae.experiments.lineage import flat_params
from stages._common import Info, load, stage_main

# The params behind this stage's outputs: its own and its ancestors' in dvc.yaml
# (tests/repo/test_dvc_yaml.py checks the list), recorded in the info file so a report
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
