"""The `cvae` command's conventions: exit statuses, --version, short options,
model names resolved against the project root, a missing model naming the stage
that trains it, grids scaled and labelled, dvc missing as one line."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from conftest import one_line
from PIL import Image
from typer.testing import CliRunner

import cvae
from cvae.evaluation.sampling import GRID_PADDING
from cvae_cli.main import QUICK_START, app, project_root


def run(*args: str):
    return CliRunner().invoke(app, list(args))


@pytest.fixture()
def project(tmp_path: Path, fashion_model: Path) -> Path:
    """A cvae project folder (dvc.yaml beside .dvc/) holding the fc model only."""
    root = tmp_path / "proj"
    (root / ".dvc").mkdir(parents=True)
    (root / "dvc.yaml").write_text(
        "stages:\n  fashion_train:\n    cmd: python -m stages.fashion_train\n"
    )
    model = root / "data" / "fashion" / "fc" / "model.safetensors"
    model.parent.mkdir(parents=True)
    shutil.copy(fashion_model, model)
    (root / "notebooks" / "deep").mkdir(parents=True)
    return root


def test_version() -> None:
    for flag in ("--version", "-V"):
        r = run(flag)
        assert r.exit_code == 0 and r.stdout.startswith(f"cvae-t2i {cvae.__version__}")


def test_model_names_resolve_against_the_project_root(project, monkeypatch) -> None:
    monkeypatch.chdir(project / "notebooks" / "deep")
    assert project_root() == project
    out = project / "notebooks" / "deep" / "g.png"
    r = run(
        "generate", "a dress", "-m", "fashion-fc", "-n", "3", "-s", "1", "-o", "g.png"
    )
    assert r.exit_code == 0, r.output
    assert "class 3 (Dress)" in r.stdout and out.is_file()
    r = run("info", "fashion-fc")
    assert r.exit_code == 0
    assert "Fashion-MNIST class label" in json.loads(r.stdout)["conditioned_on"]


def test_a_missing_model_names_the_stage_and_the_quick_start(project, monkeypatch):
    monkeypatch.chdir(project / "notebooks")
    r = run("generate", "a dress", "-m", "fashion-conv", "-o", "x.png")
    err = one_line(r.stderr)
    assert r.exit_code == 1  # runtime: the command was right, the file is missing
    assert "`dvc repro fashion_train@conv`" in err and QUICK_START in err
    r = run("generate", "a cow", "-m", "coco", "-o", "x.png")
    assert r.exit_code == 1 and "`dvc repro coco_train`" in one_line(r.stderr)
    assert not (project / "notebooks" / "x.png").exists()


def test_grids_scale_by_nearest_neighbour_and_take_a_title(fashion_model, tmp_path):
    args = ["generate", "a dress", "-m", str(fashion_model), "-n", "4", "--nrow", "4"]
    assert run(*args, "-o", str(tmp_path / "a.png")).exit_code == 0
    assert run(*args, "-o", str(tmp_path / "b.png"), "--scale", "3").exit_code == 0
    r = run(*args, "-o", str(tmp_path / "c.png"), "--scale", "3", "--labels")
    assert r.exit_code == 0
    a, b, c = (Image.open(tmp_path / f"{x}.png").convert("L") for x in "abc")
    assert a.size == (4 * 28 + 5 * GRID_PADDING, 28 + 2 * GRID_PADDING)
    assert b.size == (3 * a.width, 3 * a.height)
    assert b.resize(a.size, Image.NEAREST).tobytes() == a.tobytes()  # no new pixels
    assert set(b.tobytes()) <= set(a.tobytes())
    assert c.width == b.width and c.height > b.height  # a title band on top
    assert c.crop((0, c.height - b.height, c.width, c.height)).tobytes() == b.tobytes()


def test_report_without_dvc_is_one_line(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no dvc (and no git) on PATH
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))  # nor beside it
    r = run("report")
    assert r.exit_code == 1
    assert "dvc not found on PATH" in one_line(r.stderr)


def test_usage_errors_exit_2_runtime_errors_exit_1(fashion_model, tmp_path) -> None:
    out = str(tmp_path / "o.png")
    assert run("generate", "a car", "-m", str(fashion_model), "-o", out).exit_code == 2
    assert run("generate", "a dress", "--bogus").exit_code == 2
    missing = str(tmp_path / "none.safetensors")
    assert run("generate", "a dress", "-m", missing, "-o", out).exit_code == 1


def test_a_scale_beyond_the_pixel_cap_is_a_usage_error(fashion_model, tmp_path):
    out = tmp_path / "big.png"
    r = run(
        "generate",
        "a dress",
        "-m",
        str(fashion_model),
        "-n",
        "1024",
        "--scale",
        "32",
        "-o",
        str(out),
    )
    assert r.exit_code == 2 and "too large" in one_line(r.stderr)
    assert not out.exists()
