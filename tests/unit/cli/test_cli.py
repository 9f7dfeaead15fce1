"""The `cvae` command's conventions: exit statuses, --version, short options,
model names resolved against the project root, a missing model naming the stage
that trains it, grids scaled and labelled, dvc missing as one line; an output
that cannot be written, a device this project does not run on and a prompt that
is empty, too long or not English each one line, leaving no file behind."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, SMALL_CLIP, make_model, one_line, temp_files
from PIL import Image
from typer.testing import CliRunner

import cvae
from cvae.evaluation.sampling import GRID_PADDING, LABEL_FONT_SIZE, TITLE_LINES
from cvae.models.checkpoint import save_model
from cvae_cli.generate import MAX_PROMPT
from cvae_cli.main import app
from cvae_cli.models import FASHION_BEST, MODELS, QUICK_START, project_root


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


def test_a_model_outside_the_pipeline_names_the_experiment_that_adds_it(
    project, monkeypatch
):
    """gmm is not in the repository's fashion.archs: its stage exists only in an
    experiment that lists it, so that is the command named."""
    shutil.copy(ROOT / "params.yaml", project / "params.yaml")
    monkeypatch.chdir(project)
    r = run("generate", "a dress", "-m", "fashion-gmm", "-o", "x.png")
    assert r.exit_code == 1
    assert (
        "`dvc exp run -S 'fashion.archs=[fc,conv,gmm,vaegan]' fashion_train@gmm`"
        in one_line(r.stderr)
    )
    r = run("generate", "a dress", "-m", "fashion-conv", "-o", "x.png")
    assert "`dvc repro fashion_train@conv`" in one_line(r.stderr)


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


# -- outputs that cannot be written ---------------------------------------------------
def test_out_naming_a_folder_is_a_usage_error(fashion_model, tmp_path) -> None:
    folder = tmp_path / "grids.png"
    folder.mkdir()
    r = run("generate", "a dress", "-m", str(fashion_model), "-o", str(folder))
    assert r.exit_code == 2
    assert one_line(r.stderr) == (
        f"error: {folder} is a folder: name a file in it, e.g. -o {folder}/grid.png\n"
    )
    assert not list(folder.iterdir()) and not temp_files(tmp_path)


@pytest.mark.parametrize(
    "code, fix",
    [
        (errno.EACCES, "pick another path with -o, or fix the folder's permissions"),
        (errno.ENOSPC, "free some space, or pick another path with -o"),
    ],
)
@pytest.mark.parametrize("labels", ["--no-labels", "--labels"])  # two writers
def test_a_failed_write_is_one_line_and_leaves_nothing(
    fashion_model, tmp_path, monkeypatch, code, fix, labels
) -> None:
    def refuse(src, dst):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr("cvae.core.files.os.replace", refuse)
    out = tmp_path / "g.png"
    r = run("generate", "a dress", "-m", str(fashion_model), "-o", str(out), labels)
    assert r.exit_code == 1
    assert (
        one_line(r.stderr)
        == f"error: cannot write {out} ({os.strerror(code)}): {fix}\n"
    )
    assert list(tmp_path.iterdir()) == []  # no grid, no temporary file


def test_an_unwritable_folder_fails_before_any_work(
    fashion_model, tmp_path, monkeypatch
):
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr("cvae.core.files.tempfile.mkstemp", refuse)
    monkeypatch.setattr("cvae_cli.generate.load_model", None)  # never reached
    out = tmp_path / "g.png"
    r = run("generate", "a dress", "-m", str(fashion_model), "-o", str(out))
    assert r.exit_code == 1
    err = one_line(r.stderr)
    assert f"cannot write {out} (Permission denied in {tmp_path})" in err
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def small_mount(tmp_path: Path):
    """A folder on a 16 KiB tmpfs, read-only or not (root only; skipped where
    mounting is not allowed)."""
    mounted: list[Path] = []

    def mount(options: str) -> Path:
        where = tmp_path / f"mnt{len(mounted)}"
        where.mkdir()
        cmd = ["mount", "-t", "tmpfs", "-o", f"{options},size=16k", "tmpfs", str(where)]
        if subprocess.run(cmd, capture_output=True).returncode != 0:
            pytest.skip("cannot mount a small tmpfs here (needs root)")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", str(where)], check=False)


def test_a_real_full_disk_and_a_read_only_disk(fashion_model, small_mount) -> None:
    full, read_only = small_mount("rw"), small_mount("ro")
    out = full / "g.png"  # 64 tiles of noise: about 80 KB of PNG
    r = run("generate", "a dress", "-m", str(fashion_model), "-n", "64", "-o", str(out))
    assert r.exit_code == 1
    assert one_line(r.stderr) == (
        f"error: cannot write {out} (No space left on device): free some space, "
        "or pick another path with -o\n"
    )
    assert list(full.iterdir()) == []
    out = read_only / "g.png"
    r = run("generate", "a dress", "-m", str(fashion_model), "-o", str(out))
    assert r.exit_code == 1
    assert f"cannot write {out} (Read-only file system in {read_only})" in one_line(
        r.stderr
    )


# -- devices --------------------------------------------------------------------------
@pytest.mark.parametrize("device", ["mps", "xpu", "meta", "hpu", "vulkan"])
def test_a_device_we_do_not_run_on_is_one_line(fashion_model, tmp_path, device):
    out = tmp_path / "g.png"
    args = ["-m", str(fashion_model), "--device", device]
    r = run("generate", "a dress", *args, "-o", str(out))
    want = f"error: device {device!r} is not supported: use auto, cpu or cuda\n"
    assert r.exit_code == 2 and one_line(r.stderr) == want
    assert not out.exists() and not temp_files(tmp_path)
    pytest.importorskip("uvicorn")  # the demo's extra
    r = run("demo", *args)
    assert r.exit_code == 2 and one_line(r.stderr) == want


def test_a_gpu_that_is_not_here_is_one_line(fashion_model, tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    r = run("generate", "a dress", "-m", str(fashion_model), "--device", "cuda:7")
    assert r.exit_code == 1
    assert "device 'cuda:7' but no CUDA GPU here: use auto or cpu" in one_line(r.stderr)


# -- prompts --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def clip_model(tmp_path_factory) -> Path:
    """A tiny COCO model conditioned on (random) CLIP text embeddings."""
    path = tmp_path_factory.mktemp("clip_model") / "coco.safetensors"
    clip = {"model": SMALL_CLIP, "pretrained": "none", "random_init": True, "seed": 0}
    model = make_model(
        "image", base_channels=4, latent_dim=8, embed_dim=8, cond_dim=256
    )
    save_model(path, model, "image", {"condition": "clip", "clip": clip})
    return path


@pytest.mark.parametrize("prompt", ["", "   ", "\t\n"])
def test_an_empty_prompt_for_a_clip_model_is_one_usage_line(
    clip_model, tmp_path, prompt
):
    r = run("generate", prompt, "-m", str(clip_model), "-o", str(tmp_path / "g.png"))
    assert r.exit_code == 2
    assert (
        r.stderr
        == 'error: the prompt is empty: give a caption, e.g. "a cow in a field"\n'
    )
    assert list(tmp_path.iterdir()) == []  # and no CLIP warning before it


@pytest.mark.parametrize("which", ["fashion", "clip"])
def test_a_prompt_past_the_cap_is_refused(fashion_model, clip_model, tmp_path, which):
    model = fashion_model if which == "fashion" else clip_model
    prompt = "a dress " * (MAX_PROMPT // 8 + 1)
    r = run("generate", prompt, "-m", str(model), "-o", str(tmp_path / "g.png"))
    assert r.exit_code == 2
    assert r.stderr == (
        f"error: the prompt is {len(prompt):,} characters long: shorten it to at "
        f"most {MAX_PROMPT:,}\n"
    )


def test_fashion_prompts_are_matched_in_english(fashion_model, tmp_path) -> None:
    r = run(
        "generate", "une robe", "-m", str(fashion_model), "-o", str(tmp_path / "g.png")
    )
    assert r.exit_code == 2
    assert one_line(r.stderr).startswith(
        "error: no Fashion-MNIST class in 'une robe' (prompts are matched in English):"
        " use one of "
    )


def test_a_long_prompt_makes_a_title_of_a_few_lines(fashion_model, tmp_path) -> None:
    prompt = "a dress " * (MAX_PROMPT // 8 - 1)
    out = tmp_path / "g.png"
    args = ["-m", str(fashion_model), "-n", "4", "--nrow", "4", "-o", str(out)]
    assert run("generate", prompt, *args, "--labels").exit_code == 0
    width, height = Image.open(out).size
    assert width == 4 * 28 + 5 * GRID_PADDING  # the title never widens the grid
    band = 2 * GRID_PADDING + TITLE_LINES * (LABEL_FONT_SIZE + 1)
    assert height == 28 + 2 * GRID_PADDING + band


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda t: t.replace("\nsize: 64", "\nsize: [64", 1),
            "params.yaml is not valid YAML at line",
        ),
        (lambda t: t + "size: 64\n", 'found duplicate key "size"'),
        (
            lambda t: t.replace("\ncoco_data:", "\ncoco_dataz:", 1),
            "unknown key coco_dataz: did you mean coco_data?",
        ),
    ],
    ids=["yaml-syntax", "duplicate-key", "renamed-section"],
)
def test_check_gives_one_line_where_dvc_gives_several(tmp_path, edit, message) -> None:
    """What DVC reports over several lines with no fix (it parses params.yaml
    before any stage runs), `cvae check` says in one."""
    text = (Path(cvae.__file__).parents[1] / "params.yaml").read_text()
    bad = tmp_path / "params.yaml"
    bad.write_text(edit(text))
    r = run("check", "--params", str(bad))
    assert r.exit_code == 2
    assert message in one_line(r.output), r.output
    good = tmp_path / "good.yaml"
    good.write_text(text)
    r = run("check", "--params", str(good))
    assert r.exit_code == 0 and r.output == f"{good}: valid\n"


def test_fashion_is_the_best_trained_fashion_model(project, monkeypatch) -> None:
    monkeypatch.chdir(project)
    # Only fc is trained: it answers for `fashion`.
    r = run("generate", "a dress", "-n", "2", "-o", "a.png")
    assert r.exit_code == 0, r.output
    assert r.stdout.strip().endswith("from fashion-fc")
    # A better model, once trained, takes over; the others stay one option away.
    assert FASHION_BEST.index("fashion-fc") > 0
    fc = project / MODELS["fashion-fc"][0]
    best = project / MODELS[FASHION_BEST[0]][0]
    best.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(fc, best)
    r = run("generate", "a dress", "-n", "2", "-o", "b.png")
    assert r.stdout.strip().endswith(f"from {FASHION_BEST[0]}")
    r = run("generate", "a dress", "-n", "2", "-o", "c.png", "-m", "fashion-fc")
    assert r.stdout.strip().endswith("from fashion-fc")


def test_fashion_with_no_model_trained_names_the_best_stage(tmp_path, monkeypatch):
    root = tmp_path / "proj"
    (root / ".dvc").mkdir(parents=True)
    (root / "dvc.yaml").write_text(
        "stages:\n  t:\n    cmd: python -m stages.fashion_train\n"
    )
    monkeypatch.chdir(root)
    r = run("generate", "a dress", "-o", "x.png")
    err = one_line(r.stderr)
    assert r.exit_code == 1 and "`dvc repro fashion_train@vaegan`" in err
    assert QUICK_START in err


# -- sampling temperature ------------------------------------------------------------
@pytest.fixture(scope="module")
def gmm_model(tiny_fashion, tmp_path_factory) -> Path:
    """A tiny gmm model file with its prior fitted to 512 real images."""
    import torch

    from cvae.data.fashion import load_dataset
    from cvae.data.prompts import CLASS_NAMES

    torch.manual_seed(0)
    model = make_model(
        "gmm", channels=[8, 16, 32], latent_dim=4, components=2, temperature=1.0
    ).eval()
    d = load_dataset(tiny_fashion)
    model.fit_prior(
        torch.from_numpy(d["train_images"]).unsqueeze(1),
        torch.from_numpy(d["train_labels"]),
        batch_size=128,
        seed=0,
    )
    path = tmp_path_factory.mktemp("gmm_model") / "model.safetensors"
    info = {"condition": "label", "classes": list(CLASS_NAMES), "epochs": 0}
    save_model(path, model, "gmm", info)
    return path


def coats(model: Path, out: Path, *extra: str) -> tuple[bytes, str]:
    """``cvae generate "a coat"`` with ``model`` to ``out``: its bytes and stdout."""
    r = run("generate", "a coat", "-m", str(model), "-n", "8", "-o", str(out), *extra)
    assert r.exit_code == 0, r.output
    return out.read_bytes(), r.stdout


def test_temperature_changes_the_prior_samples_only(gmm_model, tmp_path) -> None:
    own, said = coats(gmm_model, tmp_path / "own.png")
    assert "(seed 0) from" in said  # no temperature named
    same, _ = coats(gmm_model, tmp_path / "t1.png", "--temperature", "1")
    assert same == own  # the file's own temperature
    half, said = coats(gmm_model, tmp_path / "t05.png", "-t", "0.5")
    assert half != own and "(seed 0, temperature 0.5) from" in said


def test_the_title_names_the_temperature(gmm_model, tmp_path) -> None:
    """At t = 1 the images are the file's own, so only the title can differ."""
    one, _ = coats(gmm_model, tmp_path / "t1.png", "--labels", "-t", "1")
    own, _ = coats(gmm_model, tmp_path / "own.png", "--labels")
    assert one != own


@pytest.mark.parametrize("t", ["0", "-1", "2.5", "nan", "inf"])
def test_a_temperature_out_of_range_is_a_usage_error(gmm_model, tmp_path, t) -> None:
    out = tmp_path / "x.png"
    r = run("generate", "a coat", "-m", str(gmm_model), "-t", t, "-o", str(out))
    err = one_line(r.stderr)
    assert r.exit_code == 2 and "--temperature must be in (0, 2]" in err
    assert "e.g. 0.6" in err and not out.exists()


def test_a_temperature_for_a_model_without_a_fitted_prior(fashion_model, tmp_path):
    out = tmp_path / "x.png"
    r = run("generate", "a coat", "-m", str(fashion_model), "-t", "0.7", "-o", str(out))
    err = one_line(r.stderr)
    assert r.exit_code == 2 and "fitted prior" in err and "-m fashion-vaegan" in err
    assert not out.exists()
