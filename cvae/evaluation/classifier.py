"""A small Fashion-MNIST classifier that scores how well a CVAE obeys its label.

Conditioning accuracy: generate ``n`` images for each class label with the CVAE,
classify them, and count how often the classifier names the label the images
were generated for. The classifier is trained once by the pipeline on the real
training set; its own test accuracy bounds what a CVAE can score.

Shape letters: B batch, K classes. Images are (B, 1, 28, 28), uint8 in 0..255 or
float in [0, 1] (``to_float_images`` maps both to [0, 1]).

The model file is the project's one format (``cvae.models.checkpoint``): safetensors
weights with arch ``fashion-classifier`` and the ``ClassifierConfig`` in the
metadata, so loading rebuilds the network without params.yaml.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from cvae.core import numerics
from cvae.core.device import resolve_device
from cvae.core.errors import CVAEError, plural
from cvae.core.files import atomic_open
from cvae.core.progress import bar, number, say, step_bar
from cvae.data import fashion
from cvae.data.batches import epoch_order
from cvae.data.prompts import CLASS_NAMES, by_class
from cvae.evaluation.sampling import batches, generate
from cvae.models import ConditionalVAE
from cvae.models.base import to_float_images
from cvae.models.checkpoint import read_metadata, save_model
from cvae.params.schema import ClassifierParams

ARCH = "fashion-classifier"  # the ``arch`` entry of a classifier model file


@dataclass
class ClassifierConfig:
    channels: list[int] = field(default_factory=lambda: [32, 64])  # 2 conv widths
    num_classes: int = 10  # labels 0..num_classes-1
    dropout: float = 0.25  # dropout before the linear head (training only)


class Classifier(nn.Module):
    """2 x (Conv 3x3 + BatchNorm + ReLU + MaxPool 2), dropout, linear.

    x (B, 1, 28, 28) in [0, 1] -> (B, c1, 14, 14) -> (B, c2, 7, 7) -> logits (B, K).
    """

    def __init__(self, cfg: ClassifierConfig):
        super().__init__()
        if len(cfg.channels) != 2:
            raise ValueError("the classifier has exactly 2 conv blocks")
        self.config = cfg
        c1, c2 = cfg.channels
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1, bias=False),  # (B, c1, 28, 28)
            nn.BatchNorm2d(c1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # (B, c1, 14, 14)
            nn.Conv2d(c1, c2, 3, padding=1, bias=False),  # (B, c2, 14, 14)
            nn.BatchNorm2d(c2),
            nn.ReLU(),
            nn.MaxPool2d(2),  # (B, c2, 7, 7)
            nn.Flatten(),  # (B, c2 * 49)
        )
        self.head = nn.Sequential(
            nn.Dropout(cfg.dropout), nn.Linear(c2 * 49, cfg.num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, K) of images (B, 1, 28, 28) in [0, 1]."""
        return self.head(self.features(x))


def train_classifier(
    images: torch.Tensor,
    labels: torch.Tensor,
    cfg: ClassifierParams,
    *,
    model_cfg: ClassifierConfig | None = None,
    log: Callable[[str], None] = say,
) -> tuple[Classifier, list[dict[str, Any]]]:
    """Train a classifier with Adam on images uint8 (N, 1, 28, 28), labels (N,).

    Seeded: the same seed and data give the same weights on CPU. Returns (the
    model in eval mode, one metrics dict per epoch, each also logged as a line).
    """
    model_cfg = model_cfg or ClassifierConfig()
    if len(images) != len(labels) or images.ndim != 4:
        raise CVAEError(
            f"images {tuple(images.shape)} and labels {tuple(labels.shape)} do not "
            "match: expected (N, 1, 28, 28) and (N,)"
        )
    if len(labels) and int(labels.max()) >= model_cfg.num_classes:
        raise CVAEError(
            f"label {int(labels.max())} >= num_classes {model_cfg.num_classes}"
        )
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)  # initial weights and dropout masks
    model = Classifier(model_cfg).to(device)
    opt = numerics.adam(model.parameters(), lr=cfg.lr)
    n, bs = len(images), cfg.batch_size
    steps = math.ceil(n / bs)
    history: list[dict[str, Any]] = []
    model.train()
    for epoch in range(cfg.epochs):
        _, perm = epoch_order(cfg.seed, epoch, n)
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        t0 = time.perf_counter()
        bar = step_bar(steps, f"classifier epoch {epoch + 1}/{cfg.epochs}")
        for step in bar:
            idx = perm[step * bs : (step + 1) * bs]
            x = to_float_images(images[idx]).to(device)  # (B, 1, 28, 28)
            y = labels[idx].to(device)  # (B,)
            logits = model(x)  # (B, K)
            loss = F.cross_entropy(logits, y, reduction="sum")
            opt.zero_grad(set_to_none=True)
            (loss / len(idx)).backward()
            opt.step()
            loss_sum += loss.detach().double()
            correct += (logits.argmax(1) == y).sum()
        mean_loss = loss_sum.item() / n
        if not math.isfinite(mean_loss):
            raise CVAEError(
                f"non-finite classifier loss in epoch {epoch + 1}: lower lr"
            )
        secs = time.perf_counter() - t0
        row = {
            "epoch": epoch + 1,
            "loss": mean_loss,
            "train_accuracy": correct.item() / n,  # with dropout, while learning
            "seconds": round(secs, 3),
        }
        history.append(row)
        log(
            f"classifier epoch {epoch + 1}/{cfg.epochs}  loss {number(row['loss'])}  "
            f"train accuracy {number(row['train_accuracy'])}  | {secs:.1f} s"
        )
    return model.eval(), history


@torch.no_grad()
def predict(
    classifier: Classifier, images: torch.Tensor, *, batch_size: int = 1000
) -> torch.Tensor:
    """Predicted labels (N,) int64 on CPU of images (N, 1, 28, 28), batched.

    Images are uint8 0..255 or float in [0, 1]; the classifier runs in eval mode.
    """
    was_training = classifier.training
    classifier.eval()
    device = next(classifier.parameters()).device
    out = [torch.empty(0, dtype=torch.int64)]
    for sl in batches(len(images), batch_size):
        x = to_float_images(images[sl]).to(device)  # (B, 1, 28, 28)
        out.append(classifier(x).argmax(1).cpu())  # (B,)
    classifier.train(was_training)
    return torch.cat(out)


def accuracy(
    classifier: Classifier,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    batch_size: int = 1000,
) -> float:
    """Share of images (N, 1, 28, 28) uint8 whose predicted label is ``labels`` (N,)."""
    if len(images) != len(labels):
        raise CVAEError(
            f"{plural(len(images), 'image')} but {plural(len(labels), 'label')}"
        )
    if len(images) == 0:
        raise CVAEError("accuracy of no images is undefined")
    pred = predict(classifier, images, batch_size=batch_size)
    return (pred == labels.cpu()).double().mean().item()


def per_class_accuracy(
    classifier: Classifier,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    batch_size: int = 1000,
) -> list[float | None]:
    """Accuracy of each class 0..K-1 (None for a class with no images)."""
    pred = predict(classifier, images, batch_size=batch_size)
    labels = labels.cpu()
    out: list[float | None] = []
    for k in range(classifier.config.num_classes):
        mask = labels == k
        n = int(mask.sum())
        out.append((pred[mask] == k).double().mean().item() if n else None)
    return out


def to_uint8_images(x: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] -> uint8 0..255, as a saved PNG would hold them."""
    return x.clamp(0, 1).mul(255).round().to(torch.uint8)


def conditioning_accuracy(
    cvae_model: ConditionalVAE,
    classifier: Classifier,
    *,
    n_per_class: int,
    seed: int,
) -> dict[str, Any]:
    """How often the classifier recognises the class a CVAE was asked for.

    For each label k, ``generate`` draws ``n_per_class`` images with seed
    ``seed + k`` (the evaluation grids' convention), quantised to uint8 like a
    saved PNG. Returns {"accuracy": overall, "per_class": [K floats],
    "n_per_class": n}.
    """
    if n_per_class < 1:
        raise CVAEError(f"n_per_class must be >= 1, got {n_per_class}")
    k_classes = classifier.config.num_classes
    model_classes = getattr(getattr(cvae_model, "config", None), "num_classes", None)
    if model_classes is not None and model_classes != k_classes:
        raise CVAEError(
            f"the CVAE has {model_classes} classes, the classifier {k_classes}"
        )
    was_training = cvae_model.training
    cvae_model.eval()
    per_class = []
    for k in bar(range(k_classes), "conditioning accuracy", unit="class"):
        imgs = generate(cvae_model, torch.tensor(k), n_per_class, seed=seed + k)
        labels = torch.full((n_per_class,), k, dtype=torch.int64)
        per_class.append(accuracy(classifier, to_uint8_images(imgs), labels))
    cvae_model.train(was_training)
    return {
        "accuracy": sum(per_class) / k_classes,  # equal n per class: the mean
        "per_class": per_class,
        "n_per_class": n_per_class,
    }


def save_classifier(
    path: str | os.PathLike, classifier: Classifier, info: dict | None = None
) -> None:
    """Write the classifier (safetensors + config metadata), atomically."""
    save_model(path, classifier, ARCH, info)  # type: ignore[arg-type]


def load_classifier(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[Classifier, dict[str, Any]]:
    """Rebuild a classifier from its file alone; (model in eval mode, metadata)."""
    meta = read_metadata(path)
    if meta["arch"] != ARCH:
        raise CVAEError(f"{path} holds a {meta['arch']!r} model, not a classifier")
    try:
        model = Classifier(ClassifierConfig(**meta["config"]))
    except (TypeError, ValueError) as e:
        raise CVAEError(f"{path}: config does not build a classifier ({e})") from e
    try:
        model.load_state_dict(load_file(str(path)), strict=True)
    except (SafetensorError, OSError) as e:
        raise CVAEError(f"{path}: weights unreadable ({e}): retrain it") from e
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise CVAEError(f"{path}: weights do not match its config ({first})") from e
    return model.to(device).eval(), meta


def conditioning_metrics(
    cvae_model: ConditionalVAE,
    classifier_path: str | os.PathLike,
    *,
    n_per_class: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Conditioning accuracy as flat keys for an evaluation metrics JSON.

    Loads the classifier file onto the CVAE's device and adds the classifier's own
    test accuracy as the reference: a CVAE scoring near it makes images as
    recognisable as real ones (sharp prototypes may even score above it).
    """
    device = next(cvae_model.parameters()).device
    classifier, meta = load_classifier(classifier_path, device)
    r = conditioning_accuracy(
        cvae_model, classifier, n_per_class=n_per_class, seed=seed
    )
    return {
        "cond_accuracy": r["accuracy"],
        "cond_accuracy_per_class": r["per_class"],
        "cond_n_per_class": n_per_class,
        "classifier_test_accuracy": meta["info"].get("test_accuracy"),
    }


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
