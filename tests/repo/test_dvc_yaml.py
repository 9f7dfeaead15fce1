"""dvc.yaml as a contract: exact code deps, stage name = file name, a desc per
stage, models declared as artifacts, metrics files that hold numbers only."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

from cvae.models import FASHION_ARCHS
from scripts.sync_deps import code_closure, diff, stage_module

DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())
STAGES = DVC["stages"]


def test_every_stage_depends_on_exactly_the_code_it_runs() -> None:
    assert diff(ROOT) == {}, "run `python scripts/sync_deps.py`"


def test_code_closure_follows_imports_transitively() -> None:
    files = code_closure(ROOT, "stages.fashion_train")
    assert "stages/fashion_train.py" in files
    assert "cvae/training/fashion.py" in files  # the stage's one library call
    assert "cvae/training/trainer.py" in files  # via training/fashion.py
    assert "cvae/training/losses.py" in files  # via training/trainer.py
    assert "stages/coco_train.py" not in files


def test_coco_training_depends_on_no_clip_code_but_the_widths() -> None:
    """coco_train never calls CLIP: of cvae/clip/ it runs only the table of
    model widths (configs.py), and the embeddings store is data."""
    files = code_closure(ROOT, "stages.coco_train")
    assert "cvae/data/embeddings.py" in files
    assert [f for f in files if f.startswith("cvae/clip/")] == ["cvae/clip/configs.py"]


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_runs_its_own_module_and_says_what_it_does(name: str) -> None:
    stage = STAGES[name]
    assert stage_module(stage["cmd"]) == f"stages.{name}"
    assert (ROOT / "stages" / f"{name}.py").is_file()
    assert len(stage.get("desc", "")) > 20
    if name != "check_params":  # every other stage waits for the params check
        assert "data/params.ok" in stage["deps"]


def test_models_are_artifacts() -> None:
    outs = {
        next(iter(o)) if isinstance(o, dict) else o
        for st in STAGES.values()
        for o in st.get("outs", [])
    }
    arts = DVC["artifacts"]
    archs = FASHION_ARCHS  # the matrix runs those of fashion.archs
    for path in (
        "data/fashion/${item.arch}/model.safetensors",
        "data/coco/model.safetensors",
        "data/fashion/classifier.safetensors",
    ):
        assert path in outs
    for art in arts.values():
        assert art["type"] == "model"
        path = art["path"]
        assert path in outs or any(
            path.replace(f"/{arch}/", "/${item.arch}/") in outs for arch in archs
        )
    assert {f"fashion-{arch}" for arch in archs} | {"coco"} <= set(arts)


def _metrics_files() -> list[Path]:
    files = []
    for name, st in STAGES.items():
        for entry in st.get("metrics", []):
            path = next(iter(entry)) if isinstance(entry, dict) else entry
            if "${item." in path:
                for arch in FASHION_ARCHS:  # committed for every arch
                    files.append(ROOT / path.replace("${item.arch}", arch))
            else:
                files.append(ROOT / path)
    return files


def test_metrics_files_hold_numbers_only() -> None:
    """Every value of every declared metrics file (as committed) is a number:
    strings, flags, lists, nulls and timings live in the info files."""
    files = [f for f in _metrics_files() if f.is_file()]
    assert len(files) >= 10, "run `dvc repro` first"
    bad = []

    def walk(value, where: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{where}.{k}")
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            bad.append(f"{where}={value!r}")
        elif re.search(r"seconds|per_s\b|time", where):
            bad.append(f"{where} (a timing)")

    for f in files:
        walk(json.loads(f.read_text()), str(f.relative_to(ROOT)))
    assert not bad, bad


def test_plots_are_titled_and_come_from_dvclive() -> None:
    for entry in DVC["plots"]:
        ((name, plot),) = entry.items()
        assert plot["title"] and plot["x_label"] == "epoch" and plot["y_label"]
        assert all(p.startswith("dvclive/") for p in plot["y"])


def _expanded(arch: str) -> dict[str, dict]:
    """dvc.yaml's stages with the fashion matrix fixed to ``arch``."""
    text = (ROOT / "dvc.yaml").read_text().replace("${item.arch}", arch)
    return yaml.safe_load(text)["stages"]


def _paths(entries: list) -> list[str]:
    return [next(iter(e)) if isinstance(e, dict) else e for e in entries]


def _lineage_keys(stages: dict[str, dict], name: str) -> set[str]:
    """Params of ``name`` and of every stage whose outputs it (transitively)
    reads, with templated paths (``${coco_data.images}``) as params too."""
    keys: set[str] = set()
    todo, seen = [name], set()
    while todo:
        stage = stages[todo.pop()]
        keys |= {p for p in stage.get("params", []) if isinstance(p, str)}
        for dep in _paths(stage.get("deps", [])):
            keys |= set(re.findall(r"\$\{([^}]+)\}", dep))
            for other, st in stages.items():
                hit = any(
                    dep == out or dep.startswith(out.rstrip("/") + "/")
                    for out in _paths(st.get("outs", []))
                )
                if hit and other not in seen:
                    seen.add(other)
                    todo.append(other)
    return keys


@pytest.mark.parametrize("arch", FASHION_ARCHS)
def test_fashion_evaluate_records_the_params_of_its_lineage(arch: str) -> None:
    from cvae.experiments.lineage import flat_params
    from cvae.params.loading import load_params
    from stages.fashion_evaluate import LINEAGE

    p = load_params(ROOT / "params.yaml")
    want = flat_params(p, _lineage_keys(_expanded(arch), "fashion_evaluate"))
    got = flat_params(p, [key.format(arch=arch) for key in LINEAGE])
    assert got == want


def test_coco_evaluate_records_the_params_of_its_lineage() -> None:
    from cvae.experiments.lineage import flat_params
    from cvae.params.loading import load_params
    from stages.coco_evaluate import LINEAGE

    p = load_params(ROOT / "params.yaml")
    want = flat_params(p, _lineage_keys(_expanded("fc"), "coco_evaluate"))
    assert flat_params(p, LINEAGE) == want
