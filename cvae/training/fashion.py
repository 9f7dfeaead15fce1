"""Training a Fashion-MNIST CVAE: the whole training split, labels as
conditions, the test split scored each epoch; a model with an adversarial term
(``vaegan``) trains beside its critic; a model with a fitted prior (``gmm``,
``vaegan``) fits it afterwards. Writes the self-describing model file.
"""

from __future__ import annotations

from pathlib import Path

import torch

from cvae.data import fashion
from cvae.data.batches import MemoryBatches, MemorySplit
from cvae.data.prompts import CLASS_NAMES
from cvae.models import build_model
from cvae.models.checkpoint import save_model
from cvae.models.gmm import FittedPrior
from cvae.params.schema import TRAIN_OVERRIDES, TRAINING_FIELDS, Fashion
from cvae.training.adversarial import AdversarialTrainer
from cvae.training.identity import fingerprint, run_fields
from cvae.training.trainer import Trainer


def train_fashion(
    arch: str, params: Fashion, data: Path, model_out: Path, history: Path, state: Path
) -> list[dict]:
    """Train ``arch`` with ``params.model.<arch>`` and ``params.train`` (whose
    ``TRAIN_OVERRIDES`` fields the model section may replace; its
    ``TRAINING_FIELDS``, e.g. ``adversarial``, configure the loop); a model with
    a fitted prior (``gmm``, ``vaegan``) then fits it to the training posteriors."""
    section = getattr(params.model, arch)
    model_params = section.model_dump()
    overrides = {k: model_params.pop(k) for k in TRAIN_OVERRIDES if k in model_params}
    loop = {k: model_params.pop(k) for k in TRAINING_FIELDS if k in model_params}
    if not loop.get("ema", 1):  # off: the run is the one without the option
        del loop["ema"]
    tcfg = params.train.model_copy(update=overrides)
    d = fashion.load_dataset(data)
    images = torch.from_numpy(d["train_images"]).unsqueeze(1)  # (N, 1, 28, 28) uint8
    labels = torch.from_numpy(d["train_labels"])  # (N,) int64
    val = (
        torch.from_numpy(d["test_images"]).unsqueeze(1),
        torch.from_numpy(d["test_labels"]),
    )
    torch.manual_seed(tcfg.seed)  # initial weights
    shape = {  # what the data decides
        "image_size": images.shape[-1],
        "in_channels": images.shape[1],
        "num_classes": len(CLASS_NAMES),
    }
    model = build_model(arch, model_params | shape)
    run_id = fingerprint(arch, model_params, run_fields(tcfg), images, labels)
    if loop:  # only then, so that the other models keep their fingerprints
        run_id = fingerprint(run_id, loop)
    extra = {"adversarial": section.adversarial} if "adversarial" in loop else {}
    trainer = (AdversarialTrainer if extra else Trainer)(
        model,
        tcfg,
        MemoryBatches(images, labels, batch_size=tcfg.batch_size, seed=tcfg.seed),
        state_path=state,
        history_path=history,
        val=MemorySplit(*val),
        run_id=run_id,
        ema=loop.get("ema") or None,  # 0 or absent: the last step's weights
        **extra,
    )
    hist = trainer.fit()
    if not trainer.dist.is_main:
        return hist  # rank 0 writes the model
    if isinstance(trainer.model, FittedPrior):  # p(z | c) from training posteriors
        trainer.model.fit_prior(
            images, labels, batch_size=tcfg.batch_size, seed=tcfg.seed
        )
    info = {
        "condition": "label",
        "classes": list(CLASS_NAMES),
        "dataset": "fashion-mnist",
        "epochs": tcfg.epochs,
        "n_train": len(images),
        "run_id": run_id,
    } | loop
    save_model(model_out, trainer.model, arch, info)
    return hist
