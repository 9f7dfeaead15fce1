"""Model names of the `cvae` command: which file of the project each one means.

``fashion`` (the default) is the best trained Fashion-MNIST model; the other
names are one file each; anything else is a path to a ``.safetensors`` file.
Names resolve against the project root, so the command works from any subfolder.
"""

from __future__ import annotations

from pathlib import Path

from cvae.core.errors import CVAEError, UsageError
from cvae.models import FASHION_ARCHS

# Model names -> (file the pipeline writes, relative to the project root; the
# DVC stage that trains it).
MODELS = {
    **{
        f"fashion-{arch}": (
            f"data/fashion/{arch}/model.safetensors",
            f"fashion_train@{arch}",
        )
        for arch in FASHION_ARCHS
    },
    "coco": ("data/coco/model.safetensors", "coco_train"),
}
# `fashion`: the first trained model of this list, ranked by conditioning accuracy
# and generation FID (docs/results.md; tests/repo checks the order against the
# committed metrics). After the quick start only conv is trained, and answers.
FASHION_BEST = ("fashion-vaegan", "fashion-gmm", "fashion-fc", "fashion-conv")
# The metrics file of each model name (what the demo shows beside its samples).
METRICS = {
    **{f"fashion-{arch}": f"metrics/fashion_{arch}.json" for arch in FASHION_ARCHS},
    "coco": "metrics/coco.json",
}
QUICK_START = "dvc exp run -n quick -S fashion.train.epochs=2 fashion_train@conv"


def project_root(start: Path | None = None) -> Path | None:
    """The cvae project holding ``start`` (or the current folder): the nearest
    folder upwards with a dvc.yaml (running this project's stages) beside a .dvc
    folder; else the checkout this command is installed from (an editable
    install); else None."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if _is_cvae_project(folder):
            return folder
    source = Path(__file__).resolve().parents[1]
    return source if _is_cvae_project(source) else None


def _is_cvae_project(folder: Path) -> bool:
    """A DVC project whose pipeline trains cvae models (not any DVC project)."""
    dvc_yaml = folder / "dvc.yaml"
    if not (dvc_yaml.is_file() and (folder / ".dvc").is_dir()):
        return False
    try:
        text = dvc_yaml.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return "stages.fashion_train" in text or "stages.coco_train" in text


def model_name(model: str) -> str:
    """``model`` itself, or for ``fashion`` the best trained Fashion-MNIST model's
    name (FASHION_BEST[0] when none is trained, so the error names its stage)."""
    if model != "fashion":
        return model
    root = project_root()
    for name in FASHION_BEST:
        if root is not None and (root / MODELS[name][0]).is_file():
            return name
    return FASHION_BEST[0]


def train_command(root: Path, stage: str) -> str:
    """The command that trains ``stage``'s model: ``dvc repro <stage>``, or for a
    Fashion model outside the pipeline's ``fashion.archs``, an experiment that
    adds it (its stage exists only then)."""
    arch = stage.removeprefix("fashion_train@")
    if arch == stage:
        return f"dvc repro {stage}"
    from cvae.params.loading import load_params

    try:
        archs = load_params(root / "params.yaml").fashion.archs
    except CVAEError:  # a broken params file: the stage reports it
        archs = [arch]
    if arch in archs:
        return f"dvc repro {stage}"
    listed = ",".join(a for a in FASHION_ARCHS if a in archs or a == arch)
    return f"dvc exp run -S 'fashion.archs=[{listed}]' {stage}"


def resolve_model(model: str) -> Path:
    """A model name from MODELS (under the project root), ``fashion`` (the first
    trained model of FASHION_BEST) or a .safetensors path."""
    model = model_name(model)
    if model in MODELS:
        rel, stage = MODELS[model]
        root = project_root()
        if root is None:
            raise UsageError(
                f"model {model!r} names a file of a cvae project, but none holds "
                f"{Path.cwd()}: cd into the project or pass a .safetensors path"
            )
        path = root / rel
        if not path.is_file():
            quick = (
                f", or a first model in about a minute: {QUICK_START}"
                if stage.startswith("fashion_train@")
                else ""
            )
            raise CVAEError(
                f"model {model!r} is not trained yet ({path} missing): run "
                f"`{train_command(root, stage)}` in {root}{quick}"
            )
        return path
    path = Path(model)
    if path.is_file():
        return path
    if path.suffix == ".safetensors":
        raise CVAEError(
            f"model file {path} not found: check the path, or use one of "
            f"{sorted(MODELS)}"
        )
    raise UsageError(
        f"unknown model {model!r}: use fashion, one of {sorted(MODELS)} or a file path"
    )
