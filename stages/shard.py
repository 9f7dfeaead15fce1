"""Stage shard: manifest + COCO images -> size x size WebDataset shards.

    python -m stages.shard --manifest data/coco/manifest.parquet \
        --images data/coco/train2017 --out data/coco/shards \
        --metrics metrics/shard.json

Params: top-level ``size`` (64, 128 or 256) and section ``shard``: shard_size,
image_format (png | jpg).
"""

from pathlib import Path
from typing import Annotated, Any

import typer

from cvae.coco import read_manifest
from cvae.errors import CVAEError
from cvae.io import write_json
from cvae.shards import IMAGE_FORMATS, SIZES, write_shards
from stages._common import load_params, stage_main


def run_shard(
    manifest: Path,
    images: Path,
    out: Path,
    metrics: Path,
    size: Any,
    p: dict[str, Any],
) -> dict[str, Any]:
    """Check params, write the shards and the stats JSON; return the stats."""
    if size not in SIZES:
        raise CVAEError(f"params size={size!r} unsupported: use one of {SIZES}")
    for key in ("shard_size", "image_format"):
        if key not in p:
            raise CVAEError(f"params shard.{key} missing: add it to params.yaml")
    if p["image_format"] not in IMAGE_FORMATS:
        raise CVAEError(
            f"params shard.image_format={p['image_format']!r}: use one of "
            f"{IMAGE_FORMATS}"
        )
    if not isinstance(p["shard_size"], int) or p["shard_size"] < 1:
        raise CVAEError(f"params shard.shard_size={p['shard_size']!r}: use an int >= 1")
    stats = write_shards(
        read_manifest(manifest),
        images,
        out,
        size=size,
        shard_size=p["shard_size"],
        image_format=p["image_format"],
        progress=True,
        workers=int(p.get("workers", 1)),
    )
    write_json(metrics, stats)
    return stats


@stage_main
def main(
    *,
    manifest: Annotated[Path, typer.Option(help="manifest parquet (filter stage)")],
    images: Annotated[Path, typer.Option(help="folder holding the images")],
    out: Annotated[Path, typer.Option(help="shard folder to (re)write")],
    metrics: Annotated[Path, typer.Option(help="stats JSON to write")],
    params: Annotated[Path, typer.Option(help="params file")] = Path("params.yaml"),
) -> None:
    """Center-crop, resize and pack the manifest's images into tar shards."""
    stats = run_shard(
        manifest,
        images,
        out,
        metrics,
        load_params("size", params),
        load_params("shard", params),
    )
    print(
        f"shard: wrote {stats['written']} images at {stats['size']}px "
        f"({stats['image_format']}) into {len(stats['shards'])} shards, skipped "
        f"{stats['skipped_corrupt']} corrupt / {stats['skipped_missing']} missing "
        f"-> {out}"
    )


if __name__ == "__main__":
    typer.run(main)
