"""A wrong value given to `dvc exp run -S` fails within seconds in check_params,
before DVC deletes any stage's outputs: the previous outputs stay byte-identical.
Run with the real `dvc` in a temporary git repository holding the pipeline."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, merge, repo_params

pytestmark = pytest.mark.skipif(shutil.which("dvc") is None, reason="dvc not installed")


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file of the workspace's outputs (data/, metrics/, plots/)."""
    return {
        str(f.relative_to(root)): f.read_bytes()
        for d in ("data", "metrics", "plots")
        for f in sorted((root / d).rglob("*"))
        if f.is_file()
    }


@pytest.fixture(scope="module")
def trained(coco_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pipeline up to coco_train, on the COCO sample with tiny settings."""
    work = tmp_path_factory.mktemp("dvc-params") / "repo"
    for name in ("cvae", "stages"):
        shutil.copytree(
            ROOT / name, work / name, ignore=shutil.ignore_patterns("__pycache__")
        )
    for name in ("dvc.yaml", ".gitignore", ".dvcignore"):
        shutil.copy(ROOT / name, work / name)
    tiny = {
        "coco_data": {
            "images": str(coco_sample / "images"),
            "captions": str(coco_sample / "captions.json"),
        },
        "embed": {"model": "ViT-S-32-alt", "device": "cpu", "batch_size": 64},
        "coco": {
            "model": {"base_channels": 4, "latent_dim": 8, "embed_dim": 8},
            "train": {"epochs": 1, "batch_size": 16, "device": "cpu"},
        },
    }
    params = merge(repo_params(), tiny)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git(work, "init", "-q")
    dvc(work, "init", "-q")
    dvc(work, "repro", "coco_train")
    git(work, "add", "-A")
    git(work, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base")
    return work


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def dvc(cwd: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    r = subprocess.run(
        ["dvc", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    if ok:
        assert r.returncode == 0, r.stdout + r.stderr
    return r


@pytest.mark.parametrize(
    "setting, message",
    [
        ("size=100", "params.yaml: size = 100: use one of 64, 128, 256"),
        (
            "conditioning=foo",
            "params.yaml: conditioning = 'foo': input should be 'concat' or 'add'",
        ),
        (
            "coco.train.lr=fast",
            "params.yaml: coco.train.lr = 'fast': a number is required, not str",
        ),
        (
            "+shard.image_fromat=jpg",
            "unknown key shard.image_fromat: did you mean shard.image_format?",
        ),
    ],
)
def test_a_bad_exp_run_value_keeps_every_output(
    trained: Path, setting: str, message: str
) -> None:
    before = snapshot(trained)
    assert "data/coco/model.safetensors" in before
    t0 = time.monotonic()
    r = dvc(trained, "exp", "run", "-S", setting, ok=False)
    seconds = time.monotonic() - t0
    out = r.stdout + r.stderr
    assert r.returncode != 0 and message in out, out
    assert "Traceback" not in out
    errors = [line for line in out.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], out  # one line
    assert snapshot(trained) == before  # nothing deleted, nothing rewritten
    assert seconds < 60, f"the check took {seconds:.0f} s"
    git(trained, "checkout", "params.yaml")  # DVC leaves the -S edit in place


def outputs(root: Path) -> dict[str, bytes]:
    """Every output file DVC tracks in the workspace: data, metrics, plots, info
    and the DVCLive curves."""
    return {
        str(f.relative_to(root)): f.read_bytes()
        for d in ("data", "metrics", "plots", "info", "dvclive")
        for f in sorted((root / d).rglob("*"))
        if f.is_file()
    }


def _zero_byte_images(work: Path, sample: Path) -> str:
    """A folder holding every sample image's name as an empty file."""
    folder = work.parent / "zero-byte-images"
    folder.mkdir(exist_ok=True)
    for f in (sample / "images").iterdir():
        (folder / f.name).touch()
    return str(folder)


def _duplicated_captions(work: Path, sample: Path) -> str:
    """The sample's captions file with its first image listed twice."""
    import json

    data = json.loads((sample / "captions.json").read_text())
    data["images"].append(dict(data["images"][0]))
    path = work.parent / "captions-dup.json"
    path.write_text(json.dumps(data))
    return str(path)


def _hand_edit(work: Path, dotted: str, value: object) -> None:
    """Edit params.yaml as a user would in an editor (no `-S`)."""
    from conftest import mutate

    params = yaml.safe_load((work / "params.yaml").read_text())
    (work / "params.yaml").write_text(
        yaml.safe_dump(mutate(params, dotted, value), sort_keys=False)
    )


# Failures only a stage can find, each once, run as a user runs them. `args` is
# the dvc command; `setup` (optional) prepares files and returns -S values.
RUNTIME_FAILURES = [
    pytest.param(
        lambda w, s: [
            "exp",
            "run",
            "-S",
            f"coco_data.images={_zero_byte_images(w, s)}",
        ],
        "manifest images could be read",
        id="images-all-zero-bytes",
    ),
    pytest.param(
        lambda w, s: ["exp", "run", "-S", "coco_data.images=/nonexistent/images"],
        "/nonexistent/images",
        id="images-folder-missing",
    ),
    pytest.param(
        lambda w, s: [
            "exp",
            "run",
            "-S",
            f"coco_data.captions={_duplicated_captions(w, s)}",
        ],
        "is listed twice",
        id="captions-duplicated-id",
    ),
    pytest.param(
        lambda w, s: [
            "exp",
            "run",
            "-S",
            "embed.model=ViT-B-32",
            "-S",
            "embed.pretrained=laion2b_s34b_b79k",
        ],
        "are not cached and huggingface.co is unreachable",
        id="clip-hub-tag-offline",
    ),
    pytest.param(
        lambda w, s: ["exp", "run", "-S", "embed.model=ViT-X-99"],
        "unknown CLIP model 'ViT-X-99'",
        id="clip-model-unknown",
    ),
    pytest.param(
        lambda w, s: (_hand_edit(w, "size", 100), ["repro", "-s", "coco_train"])[1],
        "size = 100: use one of 64, 128, 256",
        id="single-item-skips-check-params",
    ),
    pytest.param(
        lambda w, s: (
            _hand_edit(w, "coco.train.epochs", 2),
            _hand_edit(w, "coco.train.lr", -1.0),
            ["repro", "-s", "coco_train"],
        )[2],
        "coco.train.lr = -1.0",
        id="single-item-bad-value",
    ),
]


@pytest.mark.parametrize("command, message", RUNTIME_FAILURES)
def test_a_stage_that_fails_at_run_time_keeps_every_output(
    trained: Path, coco_sample: Path, command, message: str, monkeypatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no network, even where there is
    before = outputs(trained)
    assert "data/coco/model.safetensors" in before
    try:
        args = command(trained, coco_sample)
        if args[:2] == ["exp", "run"]:  # the fixture's pipeline ends at coco_train
            args = [*args, "coco_train"]
        r = dvc(trained, *args, ok=False)
        out = r.stdout + r.stderr
        assert r.returncode != 0 and message in out, out
        assert "Traceback" not in out, out
        errors = [line for line in out.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and message in errors[0], out
        assert outputs(trained) == before  # nothing deleted, nothing rewritten
    finally:  # stages that ran before the failure updated the lock: take it back
        git(trained, "checkout", "params.yaml", "dvc.lock")
    status = dvc(trained, "status", "coco_train")
    assert "changed" not in status.stdout, status.stdout  # outputs match the lock


def test_a_full_disk_is_found_before_the_work_and_keeps_every_output(
    trained: Path,
) -> None:
    """data/coco on a file system with less room than the last run's outputs
    took: coco_train refuses before training, and nothing is lost."""
    coco = trained / "data" / "coco"
    keep = trained.parent / "coco-keep"
    shutil.copytree(coco, keep)
    used = sum(f.stat().st_size for f in keep.rglob("*") if f.is_file())
    size = used + (2 << 20)  # room for what is there, not for a new model beside it
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(coco)],
        capture_output=True,
    )
    if mounted.returncode != 0:
        shutil.rmtree(keep)
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        shutil.copytree(keep, coco, dirs_exist_ok=True)
        before = outputs(trained)
        r = dvc(
            trained, "exp", "run", "-S", "coco.train.epochs=2", "coco_train", ok=False
        )
        out = r.stdout + r.stderr
        assert "not enough free space for this run's outputs" in out, out
        assert "Traceback" not in out, out
        assert outputs(trained) == before
    finally:
        git(trained, "checkout", "params.yaml", "dvc.lock")
        subprocess.run(["umount", "-l", str(coco)], check=False)
        shutil.rmtree(keep)
