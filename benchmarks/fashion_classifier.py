"""The classifier behind conditioning accuracy: which network and schedule.

    python -m benchmarks.fashion_classifier                 # every row, cached
    python -m benchmarks.fashion_classifier --rows plain      # the earlier network only

Each row is ``fashion.classifier`` of params.yaml with some keys changed,
trained by the pipeline's own code on all 60,000 training images and scored on
the 10,000 test images; per row: test accuracy, the weakest class, and the
training time and the CPU it was measured on (run on idle cores: a second
job on 2 cores doubles it; times compare within one CPU only). Results are
cached under ``benchmarks/.cache/`` by the row's params; writes
``fashion_classifier.json`` and ``fashion_classifier.md`` beside this file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

from cvae.core import numerics

numerics.pin()  # as the stages do, before torch or NumPy is imported

import torch  # noqa: E402

from benchmarks.records import merge_and_write  # noqa: E402
from cvae.core.files import write_json  # noqa: E402
from cvae.data import fashion  # noqa: E402
from cvae.data.prompts import CLASS_NAMES  # noqa: E402
from cvae.evaluation.classifier import (  # noqa: E402
    accuracy,
    per_class_accuracy,
    train_classifier,
)
from cvae.experiments import markdown  # noqa: E402
from cvae.params.loading import load_params  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
DATA = ROOT / "data" / "fashion" / "dataset.npz"

PLAIN = {  # the earlier classifier: 2 single-conv blocks, no augmentation
    "channels": [32, 64],
    "convs_per_block": 1,
    "hidden": 0,
    "dropout": 0.25,
    "flip": False,
    "shift": 0,
    "epochs": 5,
    "lr": 0.001,
    "weight_decay": 0.0,
    "schedule": "constant",
}
ROWS = {  # name -> (what it tries, changes to fashion.classifier)
    "plain": ("2 blocks x 1 conv (32, 64), 5 epochs, constant lr 1e-3", PLAIN),
    "default": ("params.yaml's fashion.classifier", {}),
    "wide": ("params.yaml's, blocks of 32 and 64 channels", {"channels": [32, 64]}),
    "short": (
        "params.yaml's, blocks of 32 and 64 channels, 5 epochs",
        {"channels": [32, 64], "epochs": 5},
    ),
    "narrow": ("params.yaml's, blocks of 16 and 32 channels", {"channels": [16, 32]}),
    "three-single": (
        "params.yaml's, three blocks of one conv (32, 64, 128)",
        {"channels": [32, 64, 128], "convs_per_block": 1},
    ),
}


def run_row(changes: dict) -> dict:
    """Train and score one row (cached by its params)."""
    params = load_params(ROOT / "params.yaml").fashion.classifier
    cfg = params.model_copy(update=changes | {"device": "cpu"})
    key = hashlib.sha256(
        json.dumps(cfg.model_dump(), sort_keys=True).encode()
    ).hexdigest()[:16]
    cache = CACHE / f"classifier-{key}.json"
    if cache.exists():
        return json.loads(cache.read_text())
    d = fashion.load_dataset(DATA)
    images = torch.from_numpy(d["train_images"]).unsqueeze(1)
    labels = torch.from_numpy(d["train_labels"])
    test_images = torch.from_numpy(d["test_images"]).unsqueeze(1)
    test_labels = torch.from_numpy(d["test_labels"])
    t0 = time.perf_counter()
    model, history = train_classifier(images, labels, cfg)
    train_s = time.perf_counter() - t0
    per_class = dict(
        zip(
            CLASS_NAMES,
            per_class_accuracy(model, test_images, test_labels),
            strict=True,
        )
    )
    weakest = min(per_class, key=per_class.get)
    out = {
        "params": cfg.model_dump(),
        "test_accuracy": accuracy(model, test_images, test_labels),
        "weakest_class": weakest,
        "weakest": per_class[weakest],
        "test_per_class": per_class,
        "train_s": round(train_s, 1),
        "epoch_s": [row["seconds"] for row in history],
        "machine": numerics.machine_record(),
    }
    write_json(cache, out)
    return out


def _cpu(model: str) -> str:
    """'Intel(R) Xeon(R) Processor' -> 'Intel Xeon': training times compare
    only within one CPU."""
    return model.replace("(R)", "").replace(" Processor", "").strip()


def table(results: dict[str, dict]) -> str:
    rows = [
        [
            ROWS[key][0] if key in ROWS else key,
            f"{r['test_accuracy']:.4f}",
            f"{r['weakest_class']} {r['weakest']:.3f}",
            f"{r['train_s'] / 60:.1f} min",
            _cpu(r["machine"]["cpu"]),
        ]
        for key, r in results.items()
    ]
    header = ["row", "test accuracy ↑", "weakest class", "training time", "CPU"]
    return markdown.table(header, rows) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    args = ap.parse_args()
    torch.set_flush_denormal(True)  # as the stages do
    numerics.set_threads(load_params(ROOT / "params.yaml").cpu_threads)
    results = {}
    for key in args.rows:
        results[key] = run_row(ROWS[key][1])
        print(f"{key}: {json.dumps(results[key])}", flush=True)
    ordered = merge_and_write("fashion_classifier", results, ROWS, table)
    print(table(ordered))


if __name__ == "__main__":
    main()
