"""Stage coco_filter: COCO captions -> manifest of the images matching keyword sets.

    python -m stages.coco_filter \
        --captions data/coco/annotations/captions_train2017.json \
        --images data/coco/train2017 --out data/coco/manifest.parquet \
        --metrics metrics/coco_filter.json --info info/coco_filter.json

Params (section ``filter``): keywords {name: [words]}, subsets [names to keep],
val_fraction, seed.
"""

from pathlib import Path
from typing import Annotated, Any

import typer

from cvae.core.errors import CVAEError, plural
from cvae.core.files import check_writable, write_record
from cvae.data.coco import filter_coco, write_manifest
from cvae.params.schema import FilterParams
from stages._common import Info, load, stage_main


def run_filter(
    captions: Path,
    images: Path | None,
    out: Path,
    metrics: Path,
    p: FilterParams,
    info: Path | None = None,
) -> dict[str, Any]:
    """Filter the captions file, write the manifest and the counts; return counts."""
    keyword_sets = {name: p.keywords[name] for name in p.subsets}
    table, counts = filter_coco(
        captions, images, keyword_sets, val_fraction=p.val_fraction, seed=p.seed
    )
    if table.num_rows == 0:
        raise CVAEError(
            f"no image of {captions} matched {sorted(keyword_sets)} "
            f"({plural(counts['missing'], 'match', 'matches')} lacked their file): "
            "widen "
            "filter.keywords or check --images"
        )
    write_manifest(out, table)
    write_record(metrics, info, counts)
    return counts


@stage_main
def main(
    *,
    captions: Annotated[Path, typer.Option(help="COCO captions_*.json")],
    out: Annotated[Path, typer.Option(help="manifest parquet to write")],
    metrics: Annotated[Path, typer.Option(help="counts JSON to write")],
    info: Info = None,
    images: Annotated[
        Path | None, typer.Option(help="image folder; omit to only count")
    ] = None,
    params: Annotated[Path, typer.Option(help="params file")] = Path("params.yaml"),
) -> None:
    """Keep the COCO images whose captions match the filter keyword sets."""
    check_writable(out, metrics, info)  # before any work
    counts = run_filter(captions, images, out, metrics, load(params).filter, info)
    per_subset = ", ".join(f"{k} {v}" for k, v in counts["subsets"].items())
    print(
        f"filter: kept {counts['kept']}/{plural(counts['images_in_file'], 'image')} "
        f"({per_subset}), {plural(counts['captions'], 'caption')}, train "
        f"{counts['train']} / val {counts['val']}, "
        f"{plural(counts['missing'], 'missing file')} -> {out}"
    )


if __name__ == "__main__":
    typer.run(main)
