"""Stage fashion_classifier: the classifier behind conditioning accuracy."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cvae.core.errors import plural
from cvae.core.files import check_writable, write_record
from cvae.evaluation.classifier import (
    train_fashion_classifier,
)
from stages._common import Info, load, stage_main


@stage_main
def main(
    data: Path = typer.Option(..., help="dataset .npz from fashion_data"),
    model_out: Path = typer.Option(..., help="output classifier .safetensors"),
    metrics: Path = typer.Option(..., help="output metrics JSON (test accuracy)"),
    info: Info = None,
    confusion: Annotated[
        Path | None, typer.Option(help="CSV (actual, predicted) of the test set")
    ] = None,
    params: Path = typer.Option(Path("params.yaml"), help="params file"),
) -> None:
    check_writable(model_out, metrics, info, confusion)  # before any work
    cfg = load(params).fashion.classifier
    m = train_fashion_classifier(cfg, data, model_out, confusion)
    write_record(metrics, info, m)
    print(
        f"fashion_classifier: test accuracy {m['test_accuracy']:.4f} on "
        f"{plural(m['n_test'], 'image')} after {plural(m['epochs'], 'epoch')} "
        f"-> {model_out}"
    )


if __name__ == "__main__":
    typer.run(main)
