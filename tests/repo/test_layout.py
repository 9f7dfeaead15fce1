"""The shape of the code: the library's layers, stages as glue, one list of
Fashion-MNIST architectures."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import get_args

import yaml
from conftest import ROOT

from cvae.models import FASHION_ARCHS
from cvae.params.schema import FashionArch, FashionModels

# What each subpackage of cvae/ may import (besides itself): lower layers only.
BASE = {"core"}
LAYERS = {
    "core": set(),
    "params": BASE,
    "data": BASE,
    "clip": BASE,
    "models": BASE,
    "embedding": BASE | {"params", "data", "clip"},
    "training": BASE | {"params", "data", "clip", "models"},
    "evaluation": BASE | {"params", "data", "clip", "models", "training"},
    "experiments": BASE
    | {"params", "data", "clip", "models", "training", "evaluation"},
}
PIPELINE = ("stages", "typer", "dvc", "dvclive", "cvae_cli")
MAX_LINES = 400


def imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module)
            if node.module == "cvae":  # from cvae import x: the module cvae.x
                out |= {f"cvae.{a.name}" for a in node.names if a.name != "__version__"}
    return out


def test_every_module_sits_in_a_subpackage_of_the_layers() -> None:
    top = sorted(p.name for p in (ROOT / "cvae").glob("*.py"))
    assert top == ["__init__.py"], f"modules outside a subpackage: {top}"
    subpackages = {p.parent.name for p in (ROOT / "cvae").glob("*/__init__.py")}
    assert subpackages == set(LAYERS)


def test_subpackages_import_only_lower_layers() -> None:
    wrong = []
    for path in sorted((ROOT / "cvae").rglob("*.py")):
        rel = path.relative_to(ROOT / "cvae")
        pkg = rel.parts[0] if len(rel.parts) > 1 else None
        for name in imports(path):
            root, _, rest = name.partition(".")
            if root in PIPELINE:
                wrong.append(f"{rel} imports {name} (the library never does)")
            elif root == "cvae" and rest:
                target = rest.split(".")[0]
                if pkg is None or (target != pkg and target not in LAYERS[pkg]):
                    wrong.append(f"{rel} imports {name}")
    assert not wrong, "\n".join(wrong)


def test_lower_layers_load_nothing_above_them() -> None:
    """Importing every module of data, clip, models and params (and core)
    loads no module of training, evaluation, embedding or experiments."""
    code = (
        "import importlib, pkgutil, sys\n"
        "import cvae.core, cvae.data, cvae.clip, cvae.models, cvae.params\n"
        "for pkg in (cvae.core, cvae.data, cvae.clip, cvae.models, cvae.params):\n"
        "    for m in pkgutil.iter_modules(pkg.__path__, pkg.__name__ + '.'):\n"
        "        importlib.import_module(m.name)\n"
        "above = ('cvae.training', 'cvae.evaluation', 'cvae.embedding', "
        "'cvae.experiments', 'stages', 'cvae_cli', 'typer', 'dvc')\n"
        "print(sorted(m for m in sys.modules if m.startswith(above)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout


def test_stages_are_glue() -> None:
    """No stage imports another stage (the shared glue of stages._common
    aside); benchmarks and the CLI call the library, never a stage."""
    wrong = []
    for path in sorted((ROOT / "stages").glob("*.py")):
        for name in imports(path):
            if name.startswith("stages.") and name != "stages._common":
                wrong.append(f"stages/{path.name} imports {name}")
    for folder in ("benchmarks", "cvae_cli"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            wrong += [
                f"{folder}/{path.name} imports {n}"
                for n in imports(path)
                if n == "stages" or n.startswith("stages.")
            ]
    assert not wrong, "\n".join(wrong)


def test_modules_hold_one_concept_each() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for p in sorted((ROOT / "cvae").rglob("*.py"))
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"over {MAX_LINES} lines, split by concept: {long}"


def test_fashion_architectures_are_listed_once() -> None:
    """The registry's list is the params schema's (its sections and the names
    fashion.archs accepts), and dvc.yaml's matrices run fashion.archs."""
    assert tuple(FashionModels.model_fields) == FASHION_ARCHS
    assert get_args(FashionArch) == FASHION_ARCHS
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    matrices = {
        name: s["matrix"]["arch"]
        for name, s in stages.items()
        if "arch" in s.get("matrix", {})
    }
    assert set(matrices) == {"fashion_train", "fashion_evaluate"}, matrices
    assert set(matrices.values()) == {"${fashion.archs}"}, matrices
