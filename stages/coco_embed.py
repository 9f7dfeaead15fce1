"""Stage coco_embed: manifest captions and original images -> CLIP embeddings.

    python -m stages.coco_embed --manifest data/coco/manifest.parquet \
        --images data/coco/train2017 --text-out data/coco/text_emb.parquet \
        --image-out data/coco/image_emb.parquet --metrics metrics/embed.json

Params (section ``embed``): model, pretrained, batch_size, device, seed,
normalize. Embeddings do not depend on the shard ``size``: images are read from
the original files listed in the manifest.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from PIL import Image

from cvae.clip import (
    RANDOM_INIT_WARNING,
    load_clip,
    split_sentences,
    write_embeddings,
)
from cvae.coco import read_manifest
from cvae.errors import CVAEError
from cvae.io import check_writable, write_record
from cvae.params import EmbedParams
from cvae.shards import ImageReadError, load_rgb
from stages._common import Info, load, stage_main


def run_embed(
    manifest: Path,
    images: Path,
    text_out: Path,
    image_out: Path,
    metrics: Path,
    p: EmbedParams,
    info: Path | None = None,
) -> dict[str, Any]:
    """Embed every caption (sentence mean) and every image; write both parquets.

    Text parquet: image_id, caption_index, caption, embedding[D], one row per
    caption. Image parquet: image_id, embedding[D], one row per readable image.
    """
    if not images.is_dir():
        raise CVAEError(f"images folder {images} not found: pass --images")
    table = read_manifest(manifest)
    rows = sorted(
        table.select(["image_id", "file_name", "captions"]).to_pylist(),
        key=lambda r: r["image_id"],
    )
    encoder = load_clip(p.model, p.pretrained, p.device, seed=p.seed)
    normalize, batch_size = p.normalize, p.batch_size

    # Text: one row per caption; all sentences batched together inside.
    cap_ids = [r["image_id"] for r in rows for _ in r["captions"]]
    cap_index = [i for r in rows for i in range(len(r["captions"]))]
    captions = [c for r in rows for c in r["captions"]]
    n_sentences = sum(len(split_sentences(c)) for c in captions)
    text_vecs = encoder.embed_texts(
        captions, batch_size=batch_size, normalize=normalize, progress=True
    )  # (n_captions, D)

    # Images: the original files, opened lazily batch by batch.
    ok_ids: list[int] = []
    skipped: list[int] = []

    def readable() -> Iterator[Image.Image]:
        for r in rows:
            try:
                img = load_rgb(images / r["file_name"])
            except (ImageReadError, FileNotFoundError):
                skipped.append(r["image_id"])
                continue
            ok_ids.append(r["image_id"])
            yield img

    image_vecs = encoder.embed_images(
        readable(),
        batch_size=batch_size,
        normalize=normalize,
        progress=True,
        total=len(rows),
    )  # (n_images, D)

    meta = {**encoder.metadata(), "normalize": normalize}
    write_embeddings(
        text_out,
        cap_ids,
        text_vecs,
        extra_columns={"caption_index": cap_index, "caption": captions},
        metadata={**meta, "kind": "text", "reduction": "sentence_mean"},
    )
    write_embeddings(image_out, ok_ids, image_vecs, metadata={**meta, "kind": "image"})
    stats: dict[str, Any] = {
        "n_captions": len(captions),
        "n_sentences": n_sentences,
        "n_images": len(ok_ids),
        "n_images_skipped": len(skipped),
        "skipped_ids": skipped,
        "dim": int(text_vecs.shape[1]),
        "model": encoder.model_name,
        "pretrained": encoder.pretrained,
        "random_init": encoder.random_init,
        "normalize": normalize,
        "device": str(encoder.device),
    }
    if encoder.random_init:
        stats["WARNING"] = RANDOM_INIT_WARNING
    write_record(metrics, info, stats)
    return stats


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
    stats = run_embed(
        manifest, images, text_out, image_out, metrics, load(params).embed, info
    )
    warn = " [RANDOM CLIP WEIGHTS]" if stats["random_init"] else ""
    print(
        f"embed: {stats['n_captions']} captions ({stats['n_sentences']} sentences), "
        f"{stats['n_images']} images (skipped {stats['n_images_skipped']}), "
        f"dim {stats['dim']}, {stats['model']}/{stats['pretrained']} on "
        f"{stats['device']}{warn} -> {text_out}, {image_out}"
    )


if __name__ == "__main__":
    typer.run(main)
