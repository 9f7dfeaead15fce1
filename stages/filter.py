"""Stage filter: COCO captions -> manifest of the images matching keyword sets.

    python -m stages.filter --captions data/coco/annotations/captions_train2017.json \
        --images data/coco/train2017 --out data/coco/manifest.parquet \
        --metrics metrics/filter.json

Params (section ``filter``): keywords {name: [words]}, subsets [names to keep],
val_fraction, seed.
"""

from pathlib import Path
from typing import Annotated, Any

import typer

from cvae.coco import filter_coco, write_manifest
from cvae.errors import CVAEError
from cvae.io import write_json
from stages._common import load_params, stage_main


def keyword_sets_from_params(p: dict[str, Any]) -> dict[str, list[str]]:
    """Check the ``filter`` params and return the keyword sets to keep."""
    for key in ("keywords", "subsets", "val_fraction", "seed"):
        if key not in p:
            raise CVAEError(f"params filter.{key} missing: add it to params.yaml")
    keywords, subsets = p["keywords"], p["subsets"]
    if not isinstance(keywords, dict) or not all(
        isinstance(v, list) and all(isinstance(w, str) for w in v)
        for v in keywords.values()
    ):
        raise CVAEError("params filter.keywords must map names to lists of words")
    if not isinstance(subsets, list) or not subsets:
        raise CVAEError("params filter.subsets must list at least one keyword set")
    unknown = [s for s in subsets if s not in keywords]
    if unknown:
        raise CVAEError(
            f"params filter.subsets names {unknown} not in filter.keywords: "
            f"use some of {sorted(keywords)}"
        )
    return {name: keywords[name] for name in subsets}


def run_filter(
    captions: Path, images: Path | None, out: Path, metrics: Path, p: dict[str, Any]
) -> dict[str, Any]:
    """Filter the captions file, write the manifest and the counts; return counts."""
    keyword_sets = keyword_sets_from_params(p)
    table, counts = filter_coco(
        captions,
        images,
        keyword_sets,
        val_fraction=float(p["val_fraction"]),
        seed=int(p["seed"]),
    )
    if table.num_rows == 0:
        raise CVAEError(
            f"no image of {captions} matched {sorted(keyword_sets)} "
            f"({counts['missing']} matches lacked their file): widen "
            "filter.keywords or check --images"
        )
    write_manifest(out, table)
    write_json(metrics, counts)
    return counts


@stage_main
def main(
    *,
    captions: Annotated[Path, typer.Option(help="COCO captions_*.json")],
    out: Annotated[Path, typer.Option(help="manifest parquet to write")],
    metrics: Annotated[Path, typer.Option(help="counts JSON to write")],
    images: Annotated[
        Path | None, typer.Option(help="image folder; omit to only count")
    ] = None,
    params: Annotated[Path, typer.Option(help="params file")] = Path("params.yaml"),
) -> None:
    """Keep the COCO images whose captions match the filter keyword sets."""
    counts = run_filter(captions, images, out, metrics, load_params("filter", params))
    per_subset = ", ".join(f"{k} {v}" for k, v in counts["subsets"].items())
    print(
        f"filter: kept {counts['kept']}/{counts['images_in_file']} images "
        f"({per_subset}), {counts['captions']} captions, train {counts['train']} "
        f"/ val {counts['val']}, {counts['missing']} missing files -> {out}"
    )


if __name__ == "__main__":
    typer.run(main)
