"""Conditioning accuracy: does a CVAE draw the class it is asked for?

Generate ``n`` images for each class label with the CVAE, classify them with the
pipeline's classifier (``cvae.evaluation.classifier``), and count how often it
names the label the images were generated for. Beside each class's score stands
the same classifier's accuracy on that class's real test images: a class whose
generations score below its real images is one the model draws worse than
reality (sharp prototypes may score above it).
"""

from __future__ import annotations

import os
from typing import Any

import torch

from cvae.core.errors import CVAEError
from cvae.core.progress import bar
from cvae.evaluation.classifier import (
    Classifier,
    accuracy,
    load_classifier,
    per_class_accuracy,
)
from cvae.evaluation.sampling import generate
from cvae.models import ConditionalVAE


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


def conditioning_metrics(
    cvae_model: ConditionalVAE,
    classifier_path: str | os.PathLike,
    real_images: torch.Tensor,
    real_labels: torch.Tensor,
    *,
    n_per_class: int,
    seed: int,
) -> dict[str, Any]:
    """Conditioning accuracy as flat keys for an evaluation metrics JSON.

    Loads the classifier file onto the CVAE's device and scores, per class, the
    CVAE's generations and the real images (N, 1, 28, 28) uint8 with labels (N,)
    (the test split). ``cond_classes_below_real`` counts the classes whose
    generations are recognised less often than their real images. Lists are in
    class order (None for a class without real images).
    """
    device = next(cvae_model.parameters()).device
    classifier, meta = load_classifier(classifier_path, device)
    r = conditioning_accuracy(
        cvae_model, classifier, n_per_class=n_per_class, seed=seed
    )
    real = per_class_accuracy(classifier, real_images, real_labels)
    below = sum(
        1 for g, t in zip(r["per_class"], real, strict=True) if t is not None and g < t
    )
    return {
        "cond_accuracy": r["accuracy"],
        "cond_accuracy_per_class": r["per_class"],
        "real_accuracy_per_class": real,
        "cond_classes_below_real": below,
        "cond_n_per_class": n_per_class,
        "classifier_test_accuracy": meta["info"].get("test_accuracy"),
    }
