"""Stage fashion_data: Fashion-MNIST IDX files -> one cached .npz (train + test)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cvae.core.files import check_writable, write_info, write_json
from cvae.data.fashion import build_dataset
from stages._common import load, stage_main


@stage_main
def main(
    out: Path = typer.Option(..., help="output .npz"),
    summary: Path = typer.Option(None, help="counts JSON (DVC metrics)"),
    info: Annotated[
        Path | None, typer.Option(help="info JSON: the counts per class")
    ] = None,
    params: Path = typer.Option(Path("params.yaml"), help="params file"),
) -> None:
    check_writable(out, summary, info)  # before any work
    d = load(params).fashion.data
    stats = build_dataset(
        d.root, out, train_limit=d.train_limit, test_limit=d.test_limit, seed=d.seed
    )
    if summary is not None:
        write_json(summary, {k: stats[k] for k in ("train", "test")})
    if info is not None:  # per-class counts describe the data: not compared
        write_info(info, {k: stats[k] for k in ("train_per_class", "test_per_class")})
    print(f"fashion_data: {stats['train']} train, {stats['test']} test images -> {out}")


if __name__ == "__main__":
    typer.run(main)
