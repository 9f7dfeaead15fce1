"""The Fashion-MNIST ablation: what each idea gives, on a cheap FID proxy.

    python -m benchmarks.fashion_ablation            # every row, cached
    python -m benchmarks.fashion_ablation --rows conv conv+gmm

Each row is a model (the pipeline's ``conv``, ``gmm`` or ``vaegan`` file, or a
``gmm`` or ``vaegan`` trained here with some of its ``fashion.model`` section
changed) and a sampler (N(0, I), or the per-class Gaussian mixture fitted to the
training posteriors). Per row:
MSE and SSIM (both conventions) of the reconstructions of the 10,000 test
images, conditioning accuracy (1,000 generations per class, the classifier of
the pipeline), and the **proxy FID**: 2,000 generations (200 per class) against
the first 2,000 test images, with the evaluation's own FID code. The proxy is
biased upward against the 10,000-image protocol (fewer samples); it ranks the
rows, it is not the protocol's number.

Inception runs at ~5 images/s on 2 CPU cores, so the Inception-bound numbers are
cached under ``benchmarks/.cache/`` (git-ignored): the real statistics once, each
row's MSE, SSIM and proxy FID by the sha256 of its model file, its sampler and
temperature. Conditioning accuracy (about 30 s) is measured afresh each run with
the pipeline's current classifier, beside each class's real-image accuracy.
Writes ``fashion_ablation.json`` (the numbers) and ``fashion_ablation.md`` (the
table) beside this file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from benchmarks.records import merge_and_write
from cvae.core.files import atomic_path, write_json
from cvae.data import fashion
from cvae.data.prompts import CLASS_NAMES
from cvae.evaluation.conditioning import conditioning_metrics
from cvae.evaluation.fid import FID
from cvae.evaluation.scores import (
    fid_to_reference,
    generate_per_condition,
    reconstruction_metrics,
)
from cvae.experiments import markdown
from cvae.models import build_model
from cvae.models.checkpoint import load_model
from cvae.models.gmm import FittedPrior
from cvae.params.loading import load_params
from cvae.params.schema import FashionEvaluate
from cvae_cli.models import train_command

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
DATA = ROOT / "data" / "fashion" / "dataset.npz"
CLASSIFIER = ROOT / "data" / "fashion" / "classifier.safetensors"
FID_WEIGHTS = ROOT / "data" / "fid" / "inception-2015-12-05.pth"
PROXY_N = 2000  # generations (and real test images) behind the proxy FID
# The decoder widths and prior components of every vaegan row trained here (the
# 15-epoch named experiment's), against the default's 64/32/16 and 1
WIDE = {"decoder_channels": [128, 64, 32], "components": 10}


@dataclass(frozen=True)
class Row:
    name: str  # what the row tries
    model: str  # "conv" / "gmm" / "vaegan": the pipeline's file; "train": trained here
    sampler: str  # "normal": z ~ N(0, I); "gmm": the fitted per-class mixture
    changes: dict = field(default_factory=dict)  # fashion.model.<arch> keys changed
    temperature: float | None = None  # the prior's, if not the model file's
    arch: str = "gmm"  # the architecture a "train" row trains
    components: int | None = None  # refit the prior with this many per class


ROWS = {
    "conv": Row("conv, paper (Table 1 weights), z ~ N(0, I)", "conv", "normal"),
    "conv+gmm": Row(
        "conv weights + per-class GMM prior (fitted, no retraining)", "conv", "gmm"
    ),
    "gmm-normal": Row(
        "gmm net (beta 0.02, latent 128, default epochs), z ~ N(0, I)",
        "gmm",
        "normal",
    ),
    "gmm": Row("gmm net + per-class GMM prior (the default `gmm`)", "gmm", "gmm"),
    "gmm-t0.8": Row(
        "gmm, prior sampled at temperature 0.8", "gmm", "gmm", temperature=0.8
    ),
    "gmm-t0.6": Row(
        "gmm, prior sampled at temperature 0.6", "gmm", "gmm", temperature=0.6
    ),
    "gmm-long": Row(
        "gmm, 20 epochs (`-S fashion.model.gmm.epochs=20`)",
        "train",
        "gmm",
        {"epochs": 20},
    ),
    "vaegan": Row(
        "vaegan: residual decoder (64/32/16) + adversarial term + one Gaussian "
        "per class (the default)",
        "vaegan",
        "gmm",
    ),
    "vaegan-2ep-narrow": Row(
        "vaegan, 2 epochs (1 plain, 1 adversarial), 10 components per class",
        "train",
        "gmm",
        {"epochs": 2, "components": 10},
        arch="vaegan",
    ),
    **{
        f"vaegan-k{k}": Row(
            f"vaegan (the default's weights), prior refitted with {k} "
            f"component{'s' * (k > 1)} per class",
            "vaegan",
            "gmm",
            components=k,
        )
        for k in (10, 5)
    },
    "vaegan-wide": Row(
        "vaegan 128/64/32, 3 epochs",
        "train",
        "gmm",
        WIDE,
        arch="vaegan",
    ),
    "vaegan-2ep": Row(
        "vaegan 128/64/32, 2 epochs (1 plain, 1 adversarial)",
        "train",
        "gmm",
        WIDE | {"epochs": 2},
        arch="vaegan",
    ),
    "vaegan-1ep": Row(
        "vaegan 128/64/32, 1 epoch, adversarial from the first step",
        "train",
        "gmm",
        WIDE | {"epochs": 1, "adversarial": {"start_epoch": 0}},
        arch="vaegan",
    ),
    "vaegan-long": Row(
        "vaegan 128/64/32, 15 epochs",
        "train",
        "gmm",
        WIDE | {"epochs": 15},
        arch="vaegan",
    ),
    **{
        f"vaegan-long-t{t}": Row(
            f"vaegan 128/64/32, 15 epochs, prior sampled at temperature {t}",
            "train",
            "gmm",
            WIDE | {"epochs": 15},
            temperature=t,
            arch="vaegan",
        )
        for t in (0.8, 0.6)
    },
    **{
        f"vaegan-long-k{k}": Row(
            f"vaegan 128/64/32, 15 epochs, prior refitted with {k} components "
            "per class",
            "train",
            "gmm",
            WIDE | {"epochs": 15},
            arch="vaegan",
            components=k,
        )
        for k in (10, 20, 40)
    },
    "vaegan-w0.8": Row(
        "vaegan 128/64/32, adversarial weight 0.8 (3 epochs)",
        "train",
        "gmm",
        WIDE | {"adversarial": {"weight": 0.8}},
        arch="vaegan",
    ),
    "vaegan-noadv": Row(
        "vaegan's residual decoder (128/64/32) without the adversarial term (weight 0)",
        "train",
        "gmm",
        WIDE | {"adversarial": {"weight": 0.0}},
        arch="vaegan",
    ),
    "vaegan-long-mismatch": Row(
        "vaegan 128/64/32, 15 epochs, the critic also rejects real images under a "
        "wrong label",
        "train",
        "gmm",
        WIDE | {"epochs": 15, "adversarial": {"mismatch": "uniform"}},
        arch="vaegan",
    ),
    "vaegan-long-mismatch-t0.8": Row(
        "vaegan 128/64/32, 15 epochs, the critic also rejects real images under a "
        "wrong label, prior sampled at temperature 0.8",
        "train",
        "gmm",
        WIDE | {"epochs": 15, "adversarial": {"mismatch": "uniform"}},
        temperature=0.8,
        arch="vaegan",
    ),
    "vaegan-prior": Row(
        "vaegan 128/64/32, the critic also judges prior decodes (3 epochs)",
        "train",
        "gmm",
        WIDE | {"adversarial": {"prior_samples": True}},
        arch="vaegan",
    ),
    "vaegan-mismatch": Row(
        "vaegan 128/64/32, the critic also rejects real images under a wrong "
        "label (3 epochs)",
        "train",
        "gmm",
        WIDE | {"adversarial": {"mismatch": "uniform"}},
        arch="vaegan",
    ),
    "vaegan-hard": Row(
        "vaegan 128/64/32, the critic also rejects real images under a hard wrong "
        "label (3 epochs)",
        "train",
        "gmm",
        WIDE | {"adversarial": {"mismatch": "hard"}},
        arch="vaegan",
    ),
    **{
        f"vaegan-long-hard{suffix}": Row(
            "vaegan 128/64/32, 15 epochs, the critic also rejects real images under a "
            f"hard wrong label{note}",
            "train",
            "gmm",
            WIDE | {"epochs": 15, "adversarial": {"mismatch": "hard"}},
            temperature=t,
            arch="vaegan",
        )
        for suffix, note, t in [
            ("", "", None),
            ("-t0.9", ", prior sampled at temperature 0.9", 0.9),
            ("-t0.8", ", prior sampled at temperature 0.8", 0.8),
        ]
    },
}


class StandardNormal(torch.nn.Module):
    """The VAE's training prior as a sampler: z ~ N(0, I), (B, L) on the CPU."""

    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim

    def sample(self, c: torch.Tensor, generator: torch.Generator | None = None):
        return torch.randn((len(c), self.latent_dim), generator=generator)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def train_images() -> tuple[torch.Tensor, torch.Tensor]:
    d = fashion.load_dataset(DATA)
    return torch.from_numpy(d["train_images"]).unsqueeze(1), torch.from_numpy(
        d["train_labels"]
    )


def trained_variant(arch: str, changes: dict) -> Path:
    """A model of ``arch`` trained with ``changes`` to fashion.model.<arch>
    (a nested section's keys merge into it), cached."""
    from cvae.training.fashion import train_fashion

    params = load_params(ROOT / "params.yaml")
    base = getattr(params.fashion.model, arch)
    update = {
        k: getattr(base, k).model_copy(update=v) if isinstance(v, dict) else v
        for k, v in changes.items()
    }
    models = params.fashion.model.model_copy(
        update={arch: base.model_copy(update=update)}
    )
    section = params.fashion.model_copy(update={"model": models})
    key = hashlib.sha256(
        json.dumps(
            [getattr(section.model, arch).model_dump(), section.train.model_dump()],
            sort_keys=True,
        ).encode()
    ).hexdigest()[:16]
    out = CACHE / f"{arch}-{key}" / "model.safetensors"
    if not out.exists():
        t0 = time.perf_counter()
        train_fashion(
            arch,
            section,
            DATA,
            out,
            out.with_name("history.json"),
            out.with_name("resume.pt"),
        )
        write_json(out.with_name("time.json"), {"train_s": time.perf_counter() - t0})
    return out


def with_fitted_prior(model: torch.nn.Module, arch: str, cfg: dict) -> FittedPrior:
    """A model of ``arch`` built from ``cfg`` with ``model``'s weights (its
    prior's excepted) and a prior fitted to the training images."""
    fitted = build_model(arch, cfg)
    weights = {
        k: v for k, v in model.state_dict().items() if not k.startswith("prior.")
    }
    missing, unexpected = fitted.load_state_dict(weights, strict=False)
    assert not unexpected and all(k.startswith("prior.") for k in missing)
    images, labels = train_images()
    fitted.eval().fit_prior(images, labels, batch_size=1000, seed=0)
    return fitted


def row_model(row: Row) -> tuple[torch.nn.Module, Path]:
    """The row's model in eval mode with its sampler in place, and its file."""
    path = (
        trained_variant(row.arch, row.changes)
        if row.model == "train"
        else ROOT / "data" / "fashion" / row.model / "model.safetensors"
    )
    if not path.is_file():
        train = train_command(ROOT, f"fashion_train@{row.model}")
        raise SystemExit(f"{path} missing: the row needs the pipeline's file ({train})")
    model, meta = load_model(path, expect_arch=("conv", "gmm", "vaegan"))
    if row.sampler == "normal":
        model.prior = StandardNormal(model.latent_dim)  # type: ignore[assignment]
        if not isinstance(model, FittedPrior):
            return model, path  # ConvCVAE.sample draws N(0, I) itself
    elif not isinstance(model, FittedPrior):  # fit a prior to these weights
        gmm = load_params(ROOT / "params.yaml").fashion.model.gmm.model_dump()
        cfg = meta["config"] | {
            "components": gmm["components"],
            "temperature": gmm["temperature"],
        }
        model = with_fitted_prior(model, "gmm", cfg)
    if row.components is not None:  # the same weights, another mixture
        cfg = meta["config"] | {"components": row.components}
        model = with_fitted_prior(model, meta["arch"], cfg)
    if row.temperature is not None:
        model.set_temperature(row.temperature)  # type: ignore[union-attr]
    return model.eval(), path


def real_stats(fid: FID, n: int = PROXY_N) -> tuple[np.ndarray, np.ndarray]:
    """Inception (mu, sigma) of the first ``n`` test images (cached)."""
    cache = CACHE / f"fid_real_test_{n}.npz"
    if cache.exists():
        with np.load(cache) as z:
            return z["mu"], z["sigma"]
    d = fashion.load_dataset(DATA)
    fid.update(torch.from_numpy(d["test_images"][:n]).unsqueeze(1), real=True)
    mu, sigma = fid.stats(real=True)
    with atomic_path(cache) as tmp, open(tmp, "wb") as f:
        np.savez(f, mu=mu, sigma=sigma)
    return mu, sigma


def evaluate_row(row: Row, fid: FID) -> dict:
    """MSE, SSIM (both), conditioning accuracy and proxy FID of one row (cached)."""
    model, path = row_model(row)
    t = getattr(model.config, "temperature", None)  # None: sampled from N(0, I)
    variant = "" if t is None or row.sampler != "gmm" else f"-t{t}"
    if row.components is not None:
        variant += f"-k{row.components}"
    cache = CACHE / f"row-{sha256(path)[:16]}-{row.sampler}{variant}.json"
    params = load_params(ROOT / "params.yaml").fashion
    d = fashion.load_dataset(DATA)
    images = torch.from_numpy(d["test_images"]).unsqueeze(1)
    labels = torch.from_numpy(d["test_labels"])
    if cache.exists():
        out = json.loads(cache.read_text())
    else:
        recon, _ = reconstruction_metrics(model, images, labels, batch_size=1000)
        conds = [torch.tensor(k) for k in range(len(CLASS_NAMES))]
        gen = generate_per_condition(
            model, conds, PROXY_N // len(conds), seed=params.fid.seed
        )
        out = {
            "mse": recon["mse"],
            "ssim": recon["ssim"],
            "ssim_valid": recon["ssim_valid"],
            "fid_proxy": fid_to_reference(fid, real_stats(fid), gen),
            "model_sha256": sha256(path),
        }
        time_file = path.with_name("time.json")
        if time_file.exists():
            out |= json.loads(time_file.read_text())
        write_json(cache, out)
    history = path.with_name("history.json")  # a variant trained here
    if history.exists():
        rows = json.loads(history.read_text())
        out["val_recon_by_epoch"] = [row["val_recon"] for row in rows]
        if "critic" in rows[0]:  # the critic's hinge loss per image
            out["critic_by_epoch"] = [row["critic"] for row in rows]
    return out | conditioning(model, images, labels, params.evaluate)


def conditioning(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    evaluate: FashionEvaluate,
) -> dict:
    """Conditioning accuracy with the pipeline's classifier, as the evaluation
    computes it, and its weakest class (cheap: not cached, so it follows the
    classifier)."""
    m = conditioning_metrics(
        model,
        CLASSIFIER,
        images,
        labels,
        n_per_class=evaluate.cond_n_per_class,
        seed=evaluate.seed,
    )
    per_class = dict(zip(CLASS_NAMES, m["cond_accuracy_per_class"], strict=True))
    weakest = min(per_class, key=per_class.get)
    return {
        "cond_accuracy": m["cond_accuracy"],
        "cond_min_class": weakest,
        "cond_min": per_class[weakest],
        "cond_accuracy_per_class": per_class,
        "cond_classes_below_real": m["cond_classes_below_real"],
        "classifier_test_accuracy": m["classifier_test_accuracy"],
    }


def write_grid(row: Row, out: Path, per_class: int = 10, seed: int = 0) -> None:
    """A PNG of ``per_class`` generations of each class, one row per class, from
    the row's model and sampler (generation seed ``seed``)."""
    from torchvision.utils import save_image

    model, _ = row_model(row)
    conds = [torch.tensor(k) for k in range(len(CLASS_NAMES))]
    images = generate_per_condition(model, conds, per_class, seed=seed)
    with atomic_path(out) as tmp:
        save_image(images, tmp, nrow=per_class, padding=1, format="png")
    print(f"{out}: {per_class} generations per class from {row.name}")


def trained(row: Row, result: dict) -> str:
    """The training-time cell: a tempered or refitted row reuses another row's
    weights."""
    if row.temperature is not None or row.components is not None:
        return "— (same weights)"
    return f"{result['train_s'] / 60:.1f} min" if "train_s" in result else "—"


def table(results: dict[str, dict]) -> str:
    rows = [
        [
            ROWS[key].name,
            f"{r['fid_proxy']:.2f}",
            f"{r['mse']:.4f}",
            f"{r['ssim']:.4f}",
            f"{r['ssim_valid']:.4f}",
            f"{r['cond_accuracy']:.4f}",
            f"{r['cond_min_class']} {r['cond_min']:.3f}",
            str(r.get("cond_classes_below_real", "—")),
            trained(ROWS[key], r),
        ]
        for key, r in results.items()
    ]
    header = [
        "row",
        f"proxy FID ({PROXY_N}) ↓",
        "MSE ↓",
        "SSIM full ↑",
        "SSIM valid ↑",
        "cond. acc. ↑",
        "weakest class",
        "classes below real",
        "training (2 cores)",
    ]
    return markdown.table(header, rows) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument(
        "--grid",
        type=Path,
        help="only write this PNG: 10 generations per class of the first row",
    )
    args = ap.parse_args()
    torch.set_flush_denormal(True)
    torch.set_num_threads(args.threads)
    if args.grid is not None:
        write_grid(ROWS[args.rows[0]], args.grid)
        return
    fid = FID(FID_WEIGHTS, batch_size=100)
    results = {}
    for key in args.rows:
        t0 = time.perf_counter()
        results[key] = evaluate_row(ROWS[key], fid)
        print(
            f"{key}: {json.dumps(results[key])} ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
    ordered = merge_and_write("fashion_ablation", results, ROWS, table)
    print(table(ordered))


if __name__ == "__main__":
    main()
