"""Stage coco_shard: manifest + COCO images -> size x size WebDataset shards.

    python -m stages.coco_shard --manifest data/coco/manifest.parquet \
        --images data/coco/train2017 --out data/coco/shards \
        --metrics metrics/shard.json

Params: top-level ``size`` (64, 128 or 256) and section ``shard``: shard_size,
image_format (png | jpg), workers. Under torchrun every rank writes its share of
the shards (``cvae.data.shard_writer``): the same bytes as one process.
"""

from pathlib import Path
from typing import Annotated, Any

import torch
import typer

from cvae.core.distributed import DistInfo, setup
from cvae.core.errors import plural
from cvae.core.files import check_writable, write_record
from cvae.data.coco import read_manifest
from cvae.data.shard_writer import write_shards
from cvae.params.schema import ShardParams
from stages._common import Info, load, stage_main


def run_shard(
    manifest: Path,
    images: Path,
    out: Path,
    metrics: Path,
    size: int,
    p: ShardParams,
    info: Path | None = None,
    dist: DistInfo | None = None,
) -> dict[str, Any]:
    """Write the shards (every torchrun rank its share) and, on rank 0, the
    stats JSON; return the stats."""
    stats = write_shards(
        read_manifest(manifest),
        images,
        out,
        size=size,
        shard_size=p.shard_size,
        image_format=p.image_format,
        progress=True,
        workers=p.workers,
        dist=dist,
    )
    if dist is None or dist.is_main:
        write_record(metrics, info, stats)
    return stats


@stage_main
def main(
    *,
    manifest: Annotated[Path, typer.Option(help="manifest parquet (filter stage)")],
    images: Annotated[Path, typer.Option(help="folder holding the images")],
    out: Annotated[Path, typer.Option(help="shard folder to (re)write")],
    metrics: Annotated[Path, typer.Option(help="stats JSON to write")],
    info: Info = None,
    params: Annotated[Path, typer.Option(help="params file")] = Path("params.yaml"),
) -> None:
    """Center-crop, resize and pack the manifest's images into tar shards."""
    check_writable(out, metrics, info)  # before any work
    p = load(params)
    dist = setup(torch.device("cpu"))  # under torchrun: gloo, a share per rank
    stats = run_shard(manifest, images, out, metrics, p.size, p.shard, info, dist)
    if not dist.is_main:
        return
    print(
        f"shard: wrote {plural(stats['written'], 'image')} at {stats['size']}px "
        f"({stats['image_format']}) into {plural(len(stats['shards']), 'shard')}, "
        "skipped "
        f"{stats['skipped_corrupt']} corrupt / {stats['skipped_missing']} missing "
        f"-> {out}"
    )


if __name__ == "__main__":
    typer.run(main)
