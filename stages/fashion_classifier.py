"""Stage fashion_classifier: the classifier behind conditioning accuracy."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import torch
import typer

from cvae import fashion
from cvae.classifier import (
    accuracy,
    per_class_accuracy,
    predict,
    save_classifier,
    train_classifier,
)
from cvae.io import atomic_open, check_writable, write_record
from cvae.params import ClassifierParams
from cvae.text import CLASS_NAMES, by_class
from stages._common import Info, load, stage_main


def write_confusion(path: Path, actual: torch.Tensor, predicted: torch.Tensor) -> None:
    """One CSV row per test image (actual, predicted class name): the input of
    DVC's ``confusion`` plot template."""
    rows = ["actual,predicted"] + [
        f"{CLASS_NAMES[a]},{CLASS_NAMES[p]}"
        for a, p in zip(actual.tolist(), predicted.tolist(), strict=True)
    ]
    with atomic_open(path) as f:
        f.write("\n".join(rows) + "\n")


def train_fashion_classifier(
    cfg: ClassifierParams, data: Path, model_out: Path, confusion: Path | None = None
) -> dict[str, Any]:
    """Train on the training split, score the test split; returns the metrics."""
    d = fashion.load_dataset(data)
    images = torch.from_numpy(d["train_images"]).unsqueeze(1)  # (N, 1, 28, 28) uint8
    labels = torch.from_numpy(d["train_labels"])  # (N,) int64
    test_images = torch.from_numpy(d["test_images"]).unsqueeze(1)
    test_labels = torch.from_numpy(d["test_labels"])
    model, history = train_classifier(images, labels, cfg)
    test_acc = accuracy(model, test_images, test_labels)
    if confusion is not None:
        write_confusion(confusion, test_labels, predict(model, test_images))
    info = {
        "dataset": "fashion-mnist",
        "classes": list(CLASS_NAMES),
        "epochs": cfg.epochs,
        "test_accuracy": test_acc,
    }
    save_classifier(model_out, model, info)
    return {
        "test_accuracy": test_acc,
        "test_per_class": by_class(per_class_accuracy(model, test_images, test_labels)),
        "n_train": len(images),
        "n_test": len(test_images),
        "epochs": cfg.epochs,
        "final_loss": history[-1]["loss"] if history else None,
    }


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
        f"{m['n_test']} images after {m['epochs']} epochs -> {model_out}"
    )


if __name__ == "__main__":
    typer.run(main)
