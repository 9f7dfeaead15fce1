"""The Fashion-MNIST classifier that judges whether a generation shows its class.

A VGG-style CNN trained once by the pipeline on the real training set, with
random flips and shifts; ``cvae.evaluation.conditioning`` scores CVAEs with it.
Its accuracy on each class's real test images is the reference a CVAE's
generations of that class are held to.

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
from dataclasses import dataclass
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
from cvae.core.progress import number, say, step_bar
from cvae.data import fashion
from cvae.data.batches import epoch_order
from cvae.data.prompts import CLASS_NAMES, by_class
from cvae.evaluation.sampling import batches
from cvae.models.base import to_float_images
from cvae.models.checkpoint import read_metadata, save_model, stored_config
from cvae.params.schema import ClassifierParams

ARCH = "fashion-classifier"  # the ``arch`` entry of a classifier model file
SIDE = 28  # Fashion-MNIST images are SIDE x SIDE, one channel


@dataclass
class ClassifierConfig:
    channels: list[int]  # conv widths, one block each; a block halves the side
    convs_per_block: int  # Conv 3x3 + BatchNorm + ReLU layers before each pooling
    hidden: int  # units of the hidden linear layer; 0 = logits straight from features
    dropout: float  # before each linear layer (training only)
    num_classes: int  # labels 0..num_classes-1

    @classmethod
    def from_params(cls, p: ClassifierParams, num_classes: int) -> ClassifierConfig:
        return cls(
            channels=list(p.channels),
            convs_per_block=p.convs_per_block,
            hidden=p.hidden,
            dropout=p.dropout,
            num_classes=num_classes,
        )


class Classifier(nn.Module):
    """A VGG-style CNN: blocks of (Conv 3x3 + BatchNorm + ReLU) x convs_per_block
    then MaxPool 2; dropout and linear layers on the flattened features.

    x (B, 1, 28, 28) in [0, 1] -> (B, c1, 14, 14) -> (B, c2, 7, 7) [-> (B, c3, 3, 3)]
    -> features (B, c_last * side^2) [-> hidden (B, H)] -> logits (B, K).
    """

    def __init__(self, cfg: ClassifierConfig):
        super().__init__()
        if not 1 <= len(cfg.channels) <= 3:
            raise ValueError(
                "the classifier has 1 to 3 conv blocks (28 -> 14 -> 7 -> 3)"
            )
        if cfg.convs_per_block < 1:
            raise ValueError("a conv block has at least one conv layer")
        self.config = cfg
        layers: list[nn.Module] = []
        side, c_in = SIDE, 1
        for c in cfg.channels:
            for _ in range(cfg.convs_per_block):
                layers += [
                    nn.Conv2d(c_in, c, 3, padding=1, bias=False),  # (B, c, s, s)
                    nn.BatchNorm2d(c),
                    nn.ReLU(),
                ]
                c_in = c
            layers.append(nn.MaxPool2d(2))  # (B, c, s // 2, s // 2)
            side //= 2
        layers.append(nn.Flatten())  # (B, c_last * side^2)
        self.features = nn.Sequential(*layers)
        n_features = c_in * side * side
        if cfg.hidden:
            head: list[nn.Module] = [
                nn.Dropout(cfg.dropout),
                nn.Linear(n_features, cfg.hidden),
                nn.ReLU(),
                nn.Dropout(cfg.dropout),
                nn.Linear(cfg.hidden, cfg.num_classes),
            ]
        else:
            head = [nn.Dropout(cfg.dropout), nn.Linear(n_features, cfg.num_classes)]
        self.head = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, K) of images (B, 1, 28, 28) in [0, 1]."""
        return self.head(self.features(x))


def augment(
    x: torch.Tensor, flip: bool, shift: int, gen: torch.Generator
) -> torch.Tensor:
    """Random label-preserving copies of images x (B, 1, H, W) in [0, 1].

    Each image is mirrored left-right with probability 1/2 (``flip``; clothes,
    shoes and bags are drawn facing either way) and moved by a whole number of
    pixels in [-shift, shift] along each axis, the uncovered border black (the
    background). Draws from ``gen`` in a fixed order, so a seeded generator gives
    the same batch on every run.
    """
    b, _, h, w = x.shape
    if flip:
        mirror = torch.rand(b, generator=gen) < 0.5  # (B,)
        x = torch.where(mirror.view(b, 1, 1, 1).to(x.device), x.flip(3), x)
    if shift:
        padded = F.pad(x, (shift, shift, shift, shift))  # (B, 1, H + 2s, W + 2s)
        dy, dx = torch.randint(0, 2 * shift + 1, (2, b), generator=gen).to(x.device)
        rows = dy[:, None] + torch.arange(h, device=x.device)  # (B, H)
        cols = dx[:, None] + torch.arange(w, device=x.device)  # (B, W)
        batch = torch.arange(b, device=x.device)[:, None, None]  # (B, 1, 1)
        x = padded[batch, 0, rows[:, :, None], cols[:, None, :]].unsqueeze(1)
    return x


def train_classifier(
    images: torch.Tensor,
    labels: torch.Tensor,
    cfg: ClassifierParams,
    *,
    log: Callable[[str], None] = say,
) -> tuple[Classifier, list[dict[str, Any]]]:
    """Train a classifier with Adam on images uint8 (N, 1, 28, 28), labels (N,).

    The network is ``cfg``'s; each batch is augmented (``augment``: cfg.flip,
    cfg.shift); the learning rate follows cfg.schedule: ``constant`` at cfg.lr,
    or ``onecycle`` (warm up to cfg.lr over the first 30% of the steps, then
    cosine down to near zero, with Adam's beta1 cycled inversely between 0.95
    and 0.85: torch's OneCycleLR, Smith & Topin 2019). Seeded: the same seed and data
    give the same weights on CPU. Returns (the model in eval mode, one metrics
    dict per epoch, each also logged as a line).
    """
    model_cfg = ClassifierConfig.from_params(cfg, len(CLASS_NAMES))
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
    opt = numerics.adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n, bs = len(images), cfg.batch_size
    steps = math.ceil(n / bs)
    sched = (
        torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps
        )
        if cfg.schedule == "onecycle"
        else None
    )
    history: list[dict[str, Any]] = []
    model.train()
    for epoch in range(cfg.epochs):
        gen, perm = epoch_order(cfg.seed, epoch, n)
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        t0 = time.perf_counter()
        bar = step_bar(steps, f"classifier epoch {epoch + 1}/{cfg.epochs}")
        for step in bar:
            idx = perm[step * bs : (step + 1) * bs]
            x = to_float_images(images[idx]).to(device)  # (B, 1, 28, 28)
            x = augment(x, cfg.flip, cfg.shift, gen)
            y = labels[idx].to(device)  # (B,)
            logits = model(x)  # (B, K)
            loss = F.cross_entropy(logits, y, reduction="sum")
            opt.zero_grad(set_to_none=True)
            (loss / len(idx)).backward()
            opt.step()
            if sched is not None:
                sched.step()
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
            "train_accuracy": correct.item() / n,  # augmented, with dropout
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
        model = Classifier(ClassifierConfig(**stored_config(meta)))
    except (TypeError, ValueError) as e:
        raise CVAEError(
            f"{path}: config does not build a classifier ({e}): retrain it "
            "(dvc repro fashion_classifier)"
        ) from e
    try:
        model.load_state_dict(load_file(str(path)), strict=True)
    except (SafetensorError, OSError) as e:
        raise CVAEError(f"{path}: weights unreadable ({e}): retrain it") from e
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise CVAEError(f"{path}: weights do not match its config ({first})") from e
    return model.to(device).eval(), meta


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
