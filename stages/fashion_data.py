"""Stage fashion_data: Fashion-MNIST IDX files -> one cached .npz (train + test)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from cvae import fashion
from cvae.io import check_writable, write_json
from cvae.params import FashionData
from cvae.text import by_class
from stages._common import load, stage_main


def build_dataset(params: FashionData, out: Path) -> dict:
    """Read the IDX files under ``params.root``, subset if asked, save to ``out``."""
    xtr, ytr = fashion.load_split(params.root, "train")
    xte, yte = fashion.load_split(params.root, "test")
    xtr, ytr = fashion.subset(xtr, ytr, params.train_limit, params.seed)
    xte, yte = fashion.subset(xte, yte, params.test_limit, params.seed + 1)
    fashion.save_dataset(
        out, train_images=xtr, train_labels=ytr, test_images=xte, test_labels=yte
    )
    return {
        "train": len(xtr),
        "test": len(xte),
        "train_per_class": by_class(np.bincount(ytr, minlength=10).tolist()),
        "test_per_class": by_class(np.bincount(yte, minlength=10).tolist()),
    }


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
    stats = build_dataset(load(params).fashion.data, out)
    if summary is not None:
        write_json(summary, {k: stats[k] for k in ("train", "test")})
    if info is not None:  # per-class counts describe the data: not compared
        write_json(info, {k: stats[k] for k in ("train_per_class", "test_per_class")})
    print(f"fashion_data: {stats['train']} train, {stats['test']} test images -> {out}")


if __name__ == "__main__":
    typer.run(main)
