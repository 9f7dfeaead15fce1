"""Stage coco_embed: manifest captions and original images -> CLIP embeddings.

    python -m stages.coco_embed --manifest data/coco/manifest.parquet \
        --images data/coco/train2017 --text-out data/coco/text_emb.parquet \
        --image-out data/coco/image_emb.parquet --metrics metrics/embed.json

Params (section ``embed``): model, pretrained, batch_size, device, seed,
normalize, num_workers. Embeddings do not depend on the shard ``size``: images
are read from the original files listed in the manifest. Under torchrun every
rank embeds its share of the batches and rank 0 writes: the same bytes as one
process (``torchrun --nproc-per-node=2 -m stages.coco_embed ...``).
"""

from pathlib import Path
from typing import Annotated

import torch
import typer

from cvae.core.distributed import setup
from cvae.core.errors import plural
from cvae.core.files import check_writable
from cvae.embedding.coco import run_embed
from stages._common import Info, load, stage_main


@stage_main
def main(
    *,
    manifest: Annotated[Path, typer.Option(help="manifest parquet (filter stage)")],
    images: Annotated[Path, typer.Option(help="folder holding the original images")],
    text_out: Annotated[Path, typer.Option(help="caption embeddings parquet")],
    image_out: Annotated[Path, typer.Option(help="image embeddings parquet")],
    metrics: Annotated[Path, typer.Option(help="stats JSON to write")],
    info: Info = None,
    params: Annotated[Path, typer.Option(help="params file")] = Path("params.yaml"),
) -> None:
    """Embed the manifest's captions and images with CLIP."""
    check_writable(text_out, image_out, metrics, info)  # before any work
    p = load(params)
    dist = setup(torch.device("cpu"))  # under torchrun: gloo, a share per rank
    stats = run_embed(
        manifest, images, text_out, image_out, metrics, p.embed, info, dist
    )
    if stats is None:  # not rank 0
        return
    warn = " [RANDOM CLIP WEIGHTS]" if stats["random_init"] else ""
    print(
        f"embed: {plural(stats['n_captions'], 'caption')} "
        f"({plural(stats['n_sentences'], 'sentence')}), "
        f"{plural(stats['n_images'], 'image')} (skipped {stats['n_images_skipped']}), "
        f"dim {stats['dim']}, {stats['model']}/{stats['pretrained']} on "
        f"{stats['device']}{warn} -> {text_out}, {image_out}"
    )


if __name__ == "__main__":
    typer.run(main)
