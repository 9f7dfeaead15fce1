"""Reliability at the stage / CLI level.

- a training run killed with SIGKILL resumes and ends with the uninterrupted weights;
- a failing stage leaves its previous outputs byte-identical and no temp files,
  and `dvc repro` does not record it as done;
- bad input is one ``error: `` line on stderr and exit code 2, never a traceback;
- model and state files load without executing code; a model of the wrong
  arch, size or condition width is refused;
- a non-finite loss stops training naming the step.

The library-level versions of these checks live in test_checkpoint, test_train,
test_shards, test_coco_filter and test_clip; this file does not repeat them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import conftest
import huggingface_hub.constants
import pyarrow as pa
import pytest
import torch
import yaml
from conftest import (
    ROOT,
    TINY_FC,
    call,
    fails,
    last_line,
    make_model,
    one_line,
    snapshot,
    temp_files,
)
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file
from typer.testing import CliRunner

from cvae.clip import weights as cvae_clip
from cvae.data.coco import (
    DEFAULT_KEYWORDS,
    MANIFEST_SCHEMA,
    filter_coco,
    subset_coco,
    write_manifest,
)
from cvae.data.shards import load_shards
from cvae.models.checkpoint import load_model, save_model
from cvae.training.state import load_state
from cvae_cli.main import app
from stages import (
    coco_embed as embed,
)
from stages import (
    coco_evaluate,
    coco_train,
    fashion_evaluate,
    fashion_train,
)
from stages import coco_filter as filter_stage
from stages import (
    coco_shard as shard,
)

PARAMS = conftest.repo_params()


def write_params(path: Path, **sections: Any) -> Path:
    """A complete params file: the repository's with ``sections`` merged in."""
    return conftest.write_params(path, sections)


def fashion_section(arch: str = "fc", model: dict | None = None, **train: Any) -> dict:
    f = json.loads(json.dumps(PARAMS["fashion"]))
    f["model"][arch] = model if model is not None else TINY_FC
    f["train"].update({"epochs": 1, "batch_size": 64, "device": "cpu", **train})
    f["evaluate"].update(batch_size=128, device="cpu")
    return f


class Evil:
    """Unpickling this creates ``marker``: proof that a loader ran code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


# -- 1. SIGKILL mid-epoch, resume, same weights ------------------------------------
def _train_cmd(data: Path, out: Path, params: Path) -> list[str]:
    """The fashion_train command line that dvc.yaml runs, with paths under ``out``."""
    args = {
        "--arch": "fc",
        "--data": data,
        "--model-out": out / "model.safetensors",
        "--history": out / "history.json",
        "--state": out / "resume.pt",
        "--params": params,
    }
    flat = [str(x) for kv in args.items() for x in kv]
    return [sys.executable, "-m", "stages.fashion_train", *flat]


def test_sigkill_mid_epoch_resumes_to_the_same_weights(tiny_fashion, tmp_path) -> None:
    # The paper's fc model, 4 epochs of 8 steps on 512 real images, on the CPU.
    section = fashion_section(model=PARAMS["fashion"]["model"]["fc"], epochs=4)
    params = write_params(tmp_path / "params.yaml", fashion=section)
    full, cut = tmp_path / "full", tmp_path / "cut"
    # One thread each: the two runs share the 2 cores without spin-waiting.
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "CUDA_VISIBLE_DEVICES": "",
        "OMP_NUM_THREADS": "1",
    }
    run = dict(cwd=ROOT, env=env, text=True)
    # The uninterrupted run goes on beside the one that gets killed.
    ref = subprocess.Popen(
        _train_cmd(tiny_fashion, full, params),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **run,
    )
    victim = subprocess.Popen(
        _train_cmd(tiny_fashion, cut, params),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        **run,
    )
    deadline = time.monotonic() + 300
    # The state appears by rename, complete, once epoch 1 is saved; the outputs
    # (model, history) only when the whole run succeeds.
    while not (cut / "resume.pt").exists():
        assert victim.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "no epoch finished in time"
        time.sleep(0.005)
    os.kill(victim.pid, signal.SIGKILL)
    assert victim.wait() == -signal.SIGKILL
    assert not (cut / "model.safetensors").exists(), "it finished before the kill"
    assert not (cut / "history.json").exists()  # outputs only with the whole run
    killed_after = load_state(cut / "resume.pt")["epoch"]  # a complete state file
    assert 1 <= killed_after < 4
    left_by_kill = set(temp_files(cut))  # a kill may interrupt a write: tolerated

    # The same command again: resumes from the state and completes.
    r = subprocess.run(
        _train_cmd(tiny_fashion, cut, params), capture_output=True, timeout=300, **run
    )
    assert r.returncode == 0, r.stderr
    assert f"after epoch {killed_after}" in r.stdout
    out, err = ref.communicate(timeout=300)
    assert ref.returncode == 0, err
    assert "resumed" not in out

    a, b = load_file(full / "model.safetensors"), load_file(cut / "model.safetensors")
    assert a.keys() == b.keys() and len(a) > 0
    for k in a:
        assert torch.equal(a[k], b[k]), k
    with (
        safe_open(str(full / "model.safetensors"), "pt") as fa,
        safe_open(str(cut / "model.safetensors"), "pt") as fb,
    ):
        assert fa.metadata() == fb.metadata()  # same run_id, config, info
    ha = json.loads((full / "history.json").read_text())
    hb = json.loads((cut / "history.json").read_text())
    keys = ("epoch", "loss", "recon", "kl", "val_loss")
    assert [[h[k] for k in keys] for h in ha] == [[h[k] for k in keys] for h in hb]
    assert len(hb) == 4
    assert not (cut / "resume.pt").exists() and not (full / "resume.pt").exists()
    assert set(temp_files(cut)) <= left_by_kill and not temp_files(full)


# One finished epoch as printed: rounded terms, the held-out ones, the speed.
EPOCH_LINE = re.compile(
    r"epoch \d+/\d+  loss [\d.]+  recon [\d.]+  kl [\d.e-]+  \| "
    r"val loss [\d.]+  recon [\d.]+  kl [\d.e-]+  \| [\d.]+ s, \d+ img/s"
)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_says_how_to_resume_and_a_changed_param_is_named(
    tiny_fashion, tmp_path, sig
) -> None:
    # far more epochs than can finish before the signal, even on a loaded machine
    section = fashion_section(model=PARAMS["fashion"]["model"]["fc"], epochs=100_000)
    params = write_params(tmp_path / "params.yaml", fashion=section)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
    run = dict(cwd=ROOT, env=env, text=True)
    p = subprocess.Popen(
        _train_cmd(tiny_fashion, out, params),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # a job started in the background (nohup, `&`) inherits SIGINT ignored,
        # and Python then keeps it ignored: give the stage Ctrl-C as a terminal does
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        **run,
    )
    deadline = time.monotonic() + 300
    while not (out / "resume.pt").exists():  # epoch 1 saved
        assert p.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    p.send_signal(sig)
    out_text, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    # Piped: no bar, no traceback at exit, only the one line that says what to do
    # (and on stdout only the epochs that finished, one line each).
    [line] = err.splitlines()
    assert re.fullmatch(r"interrupted in epoch \d+: the state after epoch \d+ .*", line)
    assert f"is kept in {out / 'resume.pt'}: re-run the same command" in line
    epochs = out_text.splitlines()
    assert epochs and all(EPOCH_LINE.fullmatch(x) for x in epochs), out_text

    # Another learning rate: the state is not resumed, and the message says why.
    section["train"]["lr"] = 0.002
    write_params(
        tmp_path / "params.yaml",
        fashion=section | {"train": section["train"] | {"epochs": 1}},
    )
    r = subprocess.run(
        _train_cmd(tiny_fashion, out, params), capture_output=True, timeout=300, **run
    )
    assert r.returncode == 0, r.stderr
    assert (
        "it belongs to another run (epochs 100000 -> 1, lr 0.001 -> 0.002)" in r.stdout
    )


# -- 2. a failing stage leaves the previous outputs as they were --------------------
def test_fashion_evaluate_failures_leave_outputs_unchanged(
    tiny_fashion, fashion_model, coco, tmp_path, capsys, monkeypatch
) -> None:
    params = write_params(tmp_path / "params.yaml", fashion=fashion_section())
    out = tmp_path / "out"
    outs = dict(
        metrics=out / "m.json",
        recon_grid=out / "r.png",
        gen_grid=out / "g.png",
        params=params,
    )
    call(fashion_evaluate.main, data=tiny_fashion, model=fashion_model, **outs)
    before = snapshot(out)
    assert len(before) == 3

    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(fashion_model.read_bytes()[:-100])
    junk_npz = tmp_path / "junk.npz"
    junk_npz.write_bytes(b"PK\x03\x04 not a zip")
    faults = [
        (tiny_fashion, truncated, "not a readable safetensors file"),
        (tiny_fashion, tmp_path / "absent.safetensors", "not found"),
        (tiny_fashion, coco.model, "holds a 'image' model, expected 'fc' or 'conv'"),
        (junk_npz, fashion_model, "not a readable .npz"),
    ]
    for data, model, msg in faults:
        err = one_line(
            fails(capsys, fashion_evaluate.main, data=data, model=model, **outs)
        )
        assert msg in err
        assert snapshot(out) == before and not temp_files(tmp_path)

    # A crash in the middle of writing a grid (disk full, killed): the old file
    # stays whole under its name and the half-written temp file is removed.
    def half_then_crash(image, fp, format=None, **kw):
        Path(fp).write_bytes(b"\x89PNG half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("PIL.Image.Image.save", half_then_crash)  # every grid
    err = one_line(
        fails(
            capsys,
            fashion_evaluate.main,
            data=tiny_fashion,
            model=fashion_model,
            **outs,
        )
    )
    assert "error: I/O failed: No space left on device: free space" in err
    assert snapshot(out) == before and not temp_files(tmp_path)


def test_shard_and_embed_failures_leave_outputs_unchanged(
    coco, tmp_path, capsys
) -> None:
    shards, metrics = tmp_path / "shards", tmp_path / "shard.json"
    shutil.copytree(coco.root / "shards64", shards)
    metrics.write_text('{"from": "the last good run"}\n')
    text, image = tmp_path / "text.parquet", tmp_path / "image.parquet"
    shutil.copy(coco.text, text)
    shutil.copy(coco.image, image)
    embed_json = tmp_path / "embed.json"
    embed_json.write_text("{}\n")
    before = snapshot(shards, metrics, text, image, embed_json)
    p = coco.params()

    bad_manifest = tmp_path / "bad.parquet"
    bad_manifest.write_bytes(b"PAR1 truncated")
    corrupt = tmp_path / "corrupt_images"  # every image is a truncated JPEG
    corrupt.mkdir()
    for f in coco.images.iterdir():
        (corrupt / f.name).write_bytes(f.read_bytes()[:1000])
    shard_kw = dict(out=shards, metrics=metrics, params=p)
    embed_kw = dict(text_out=text, image_out=image, metrics=embed_json, params=p)

    err = one_line(
        fails(capsys, shard.main, manifest=bad_manifest, images=coco.images, **shard_kw)
    )
    assert "not a readable parquet file" in err and "re-run the filter" in err
    err = last_line(
        fails(capsys, shard.main, manifest=coco.manifest, images=corrupt, **shard_kw)
    )
    assert "none of the 8 manifest images could be read" in err and "8 corrupt" in err
    err = one_line(
        fails(
            capsys,
            shard.main,
            manifest=coco.manifest,
            images=tmp_path / "absent",
            **shard_kw,
        )
    )
    assert "images folder" in err
    err = one_line(
        fails(capsys, embed.main, manifest=bad_manifest, images=coco.images, **embed_kw)
    )
    assert "not a readable parquet file" in err
    err = one_line(
        fails(
            capsys,
            embed.main,
            manifest=coco.manifest,
            images=tmp_path / "absent",
            **embed_kw,
        )
    )
    assert "images folder" in err
    assert snapshot(shards, metrics, text, image, embed_json) == before
    assert not temp_files(tmp_path)


def test_coco_evaluate_checks_clip_before_writing(coco, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    kw = dict(
        shards=coco.root / "shards64",
        text_emb=coco.text,
        image_emb=coco.image,
        metrics=out / "coco.json",
        recon_grid=out / "r.png",
        gen_grid=out / "g.png",
        params=coco.params(),
    )
    call(coco_evaluate.main, model=coco.model, **kw)
    before = snapshot(out)
    assert len(before) == 3
    # The model names CLIP weights that are not here (deleted, other machine).
    model, meta = load_model(coco.model)
    info = meta["info"]
    info["clip"] = info["clip"] | {"pretrained": str(tmp_path / "gone" / "clip.pt")}
    moved = tmp_path / "moved.safetensors"
    save_model(moved, model, "image", info)
    err = one_line(fails(capsys, coco_evaluate.main, model=moved, **kw))
    assert "CLIP checkpoint" in err and "not found" in err
    assert snapshot(out) == before and not temp_files(tmp_path)


def test_shard_stage_counts_corrupt_and_converts_modes(coco, tmp_path, capsys) -> None:
    images = tmp_path / "images"
    images.mkdir()
    src = sorted(coco.images.iterdir())
    shutil.copy(src[0], images / "ok.jpg")
    (images / "trunc.jpg").write_bytes(src[1].read_bytes()[:3000])
    (images / "text.jpg").write_text("<html>404</html>")
    Image.open(src[2]).convert("L").save(images / "gray.jpg")
    rgba = Image.open(src[3]).convert("RGBA")
    rgba.putalpha(0)  # fully transparent: composited over white
    rgba.save(images / "rgba.png")
    names = ["ok.jpg", "trunc.jpg", "text.jpg", "gray.jpg", "rgba.png", "gone.jpg"]
    rows = [
        {
            "image_id": i + 1,
            "file_name": n,
            "subsets": ["nature"],
            "captions": ["A cow."],
            "split": "train",
        }
        for i, n in enumerate(names)
    ]
    write_manifest(tmp_path / "m.parquet", pa.Table.from_pylist(rows, MANIFEST_SCHEMA))
    capsys.readouterr()
    call(
        shard.main,
        manifest=tmp_path / "m.parquet",
        images=images,
        out=tmp_path / "s",
        metrics=tmp_path / "s.json",
        info=tmp_path / "s.info.json",
        params=coco.params(),
    )
    assert "skipped 2 corrupt / 1 missing" in capsys.readouterr().out
    stats = json.loads((tmp_path / "s.json").read_text())
    info = json.loads((tmp_path / "s.info.json").read_text())
    assert stats["written"] == 3 and info["skipped_corrupt_ids"] == [2, 3]
    assert info["skipped_missing_ids"] == [6]
    ids, pixels, _ = load_shards(tmp_path / "s")
    assert ids.tolist() == [1, 4, 5] and pixels.shape == (3, 64, 64, 3)
    gray = pixels[1].astype(int)
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    assert (pixels[2] == 255).all()


@pytest.mark.skipif(shutil.which("dvc") is None, reason="dvc not installed")
def test_dvc_does_not_record_a_failing_stage(coco_sample, tmp_path) -> None:
    work = tmp_path / "repo"
    for name in ("cvae", "stages"):
        shutil.copytree(
            ROOT / name, work / name, ignore=shutil.ignore_patterns("__pycache__")
        )
    for name in ("dvc.yaml", ".gitignore"):
        shutil.copy(ROOT / name, work / name)
    params = json.loads(json.dumps(PARAMS))
    params["coco_data"] = {"images": "coco/images", "captions": "coco/captions.json"}
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    full, _ = filter_coco(
        coco_sample / "captions.json", None, DEFAULT_KEYWORDS, val_fraction=0.2, seed=0
    )
    ids = full.column("image_id").to_pylist()[:2]
    good = subset_coco(
        coco_sample / "captions.json", coco_sample / "images", work / "coco", ids
    ).read_bytes()
    captions = work / "coco" / "captions.json"
    data = json.loads(good)
    for ann in data["annotations"]:  # instances, not captions
        ann["segmentation"] = []
        del ann["caption"]
    bad = json.dumps(data).encode()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}

    def dvc(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["dvc", *args],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def pending() -> set[str]:
        r = dvc("status", "coco_filter", "--json")
        assert r.returncode == 0, r.stderr
        return set(json.loads(r.stdout or "{}"))

    subprocess.run(["git", "init", "-q"], cwd=work, check=True)
    assert dvc("init", "-q").returncode == 0

    captions.write_bytes(bad)
    r = dvc("repro", "coco_filter")  # never succeeded: nothing is recorded
    assert r.returncode != 0 and "error: " in r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    lock = work / "dvc.lock"
    assert not lock.exists() or "coco_filter" not in lock.read_text()
    assert "coco_filter" in pending()

    captions.write_bytes(good)
    r = dvc("repro", "coco_filter")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "coco_filter" not in pending()
    locked = lock.read_bytes()
    manifest = work / "data" / "coco" / "manifest.parquet"
    last_good = manifest.read_bytes()

    captions.write_bytes(bad)  # a later run fails: the lock keeps the last good one
    r = dvc("repro", "coco_filter")
    assert (
        r.returncode != 0 and "instances/keypoints annotations" in r.stdout + r.stderr
    )
    assert lock.read_bytes() == locked
    assert "coco_filter" in pending()
    # dvc deletes a stage's outs before running it: the last good manifest comes
    # back from the cache (metrics with `cache: false` come back from git only).
    assert dvc("checkout", "coco_filter").returncode == 0
    assert manifest.read_bytes() == last_good


# -- 3. bad input: one clear line, exit 2 ----------------------------------------------
@pytest.mark.parametrize(
    "prompt, msg",
    [
        (
            "a spaceship",
            "no Fashion-MNIST class in 'a spaceship' (prompts are matched in English)",
        ),
        ("a shirt and a dress", "names more than one class"),
        ("", "empty prompt"),
        (" \t ", "empty prompt"),
    ],
)
def test_cli_bad_prompt(fashion_model, tmp_path, prompt, msg) -> None:
    out = tmp_path / "out.png"
    r = CliRunner().invoke(
        app,
        [
            "generate",
            prompt,
            "--model",
            str(fashion_model),
            "--out",
            str(out),
            "--device",
            "cpu",
        ],
    )
    assert r.exit_code == 2 and msg in one_line(r.stderr)
    assert r.stdout == "" and not out.exists()


def test_cli_prompt_with_unicode_case_folding(fashion_model, tmp_path) -> None:
    # 'ſ' (long s) matches 's' under re.IGNORECASE: a match, never an exception.
    r = CliRunner().invoke(
        app,
        [
            "generate",
            "a dre\u017fs",
            "--model",
            str(fashion_model),
            "--n",
            "2",
            "--out",
            str(tmp_path / "o.png"),
            "--device",
            "cpu",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "class 3 (Dress)" in r.stdout


def test_cli_bad_model_files(tmp_path) -> None:
    runner = CliRunner()
    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.safetensors"
    torch.save({"w": Evil(marker)}, evil)  # a pickle named like a model
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    for path in (evil, empty):
        for cmd in (["info", str(path)], ["generate", "a dress", "--model", str(path)]):
            r = runner.invoke(app, cmd)
            assert r.exit_code == 1, r.output  # a runtime error, not a usage one
            assert "not a readable safetensors file" in one_line(r.stderr)
    assert not marker.exists()


def test_clip_hub_tag_offline_fails_fast(coco, tmp_path, monkeypatch, capsys) -> None:
    """No network, no cache: the embed stage and the CLI stop at once with the fix."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    p = coco.params()
    params = yaml.safe_load(p.read_text())
    params["embed"].update(model="ViT-B-32", pretrained="laion2b_s34b_b79k")
    hub = write_params(tmp_path / "hub.yaml", **params)
    kw = dict(
        manifest=coco.manifest,
        images=coco.images,
        text_out=tmp_path / "t.pq",
        image_out=tmp_path / "i.pq",
        metrics=tmp_path / "e.json",
    )
    start = time.monotonic()
    err = one_line(fails(capsys, embed.main, params=hub, **kw))
    assert time.monotonic() - start < 10
    assert "ViT-B-32/laion2b_s34b_b79k are not cached" in err
    assert "set embed.pretrained to /path/to/file" in err
    assert not list(tmp_path.glob("*.pq"))

    torch.manual_seed(0)
    model = make_model(
        "image",
        image_size=64,
        conditioning="concat",
        cond_dim=512,
        base_channels=4,
        latent_dim=8,
        embed_dim=8,
    )
    clip_info = {
        "model": "ViT-B-32",
        "pretrained": "laion2b_s34b_b79k",
        "random_init": False,
        "seed": 0,
        "normalize": False,
    }
    path = tmp_path / "coco.safetensors"
    save_model(path, model, "image", {"condition": "clip", "clip": clip_info})
    start = time.monotonic()
    r = CliRunner().invoke(
        app,
        [
            "generate",
            "Cows on a hill.",
            "--model",
            str(path),
            "--out",
            str(tmp_path / "o.png"),
            "--device",
            "cpu",
        ],
    )
    assert time.monotonic() - start < 10
    err = one_line(r.stderr)
    assert r.exit_code == 1 and "are not cached" in err
    assert "set --clip-checkpoint to /path/to/file" in err  # the CLI's own option

    # Without HF_HUB_OFFLINE the hub is probed (3 s at most) and fails the same way.
    monkeypatch.delenv("HF_HUB_OFFLINE")
    if cvae_clip.network_available():
        return  # a machine with network would download: not this test's business
    start = time.monotonic()
    err = one_line(fails(capsys, embed.main, params=hub, **kw))
    assert time.monotonic() - start < 10 and "unreachable" in err


def test_filter_stage_bad_inputs(coco, tmp_path, capsys) -> None:
    p = coco.params()
    out, metrics = tmp_path / "manifest.parquet", tmp_path / "filter.json"
    instances = tmp_path / "instances.json"
    instances.write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": "a.jpg"}],
                "annotations": [
                    {"id": 1, "image_id": 1, "bbox": [], "segmentation": []}
                ],
            }
        )
    )
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2, 3]")
    cases = [
        (tmp_path / "absent.json", coco.images, "captions file", "not found"),
        (coco.captions, tmp_path / "absent", "images folder", "not found"),
        (instances, coco.images, "instances/keypoints annotations", "not captions"),
        (listed, coco.images, "is not a COCO file", "captions_*.json"),
    ]
    for captions, images, what, fix in cases:
        err = one_line(
            fails(
                capsys,
                filter_stage.main,
                captions=captions,
                images=images,
                out=out,
                metrics=metrics,
                params=p,
            )
        )
        assert what in err and fix in err
    assert not out.exists() and not metrics.exists()


def test_coco_train_refuses_params_the_shards_do_not_match(
    coco, tmp_path, capsys
) -> None:
    """Valid params (size 128) that the data (64 px shards) does not match: a
    runtime error, and no output. Invalid params: tests/unit/params."""
    p = yaml.safe_load(coco.params().read_text())
    p["size"] = 128
    params = write_params(tmp_path / "p.yaml", **p)
    out = tmp_path / "out"
    msg = "params size=128 but"
    err = one_line(
        fails(
            capsys,
            coco_train.main,
            code=1,
            shards=coco.root / "shards64",
            text_emb=coco.text,
            image_emb=coco.image,
            model_out=out / "m.safetensors",
            history=out / "h.json",
            state=out / "s.pt",
            params=params,
        )
    )
    assert msg in err and not out.exists()


# -- 4. checkpoints: no code runs, wrong arch / size / width refused -----------------
def test_evaluate_refuses_the_wrong_model(
    coco, fashion_model, tmp_path, capsys
) -> None:
    torch.manual_seed(0)
    wide = make_model(
        "image",
        image_size=64,
        conditioning="concat",
        cond_dim=512,
        base_channels=4,
        latent_dim=8,
        embed_dim=8,
    )
    _, meta = load_model(coco.model)
    save_model(tmp_path / "wide.safetensors", wide, "image", meta["info"])
    out = tmp_path / "out"
    kw = dict(
        text_emb=coco.text,
        image_emb=coco.image,
        metrics=out / "m.json",
        recon_grid=out / "r.png",
        gen_grid=out / "g.png",
        params=coco.params(),
    )
    cases = [
        (fashion_model, 64, "holds a 'fc' model, expected 'image'"),
        (coco.model, 128, "is a 64 px model but the shards hold 128 px images"),
        (
            tmp_path / "wide.safetensors",
            64,
            "takes 512-d conditions but the embeddings hold 256-d vectors",
        ),
    ]
    for model, size, msg in cases:
        err = one_line(
            fails(
                capsys,
                coco_evaluate.main,
                model=model,
                shards=coco.root / f"shards{size}",
                **kw,
            )
        )
        assert msg in err
    assert not out.exists()


def test_resume_state_never_executes_code(tiny_fashion, tmp_path, capsys) -> None:
    marker = tmp_path / "code-ran"
    state = tmp_path / "resume.pt"
    torch.save({"run_id": "x", "epoch": 1, "payload": Evil(marker)}, state)
    params = write_params(tmp_path / "p.yaml", fashion=fashion_section())
    err = one_line(
        fails(
            capsys,
            fashion_train.main,
            arch="fc",
            data=tiny_fashion,
            model_out=tmp_path / "m.safetensors",
            history=tmp_path / "h.json",
            state=state,
            params=params,
        )
    )
    assert f"resume checkpoint {state} is unreadable" in err and "delete it" in err
    assert not marker.exists() and not (tmp_path / "m.safetensors").exists()


# -- 5. non-finite loss ----------------------------------------------------------------
def _diverge(tiny_fashion: Path, tmp_path: Path, capsys) -> tuple[str, Path]:
    params = write_params(
        tmp_path / "p.yaml", fashion=fashion_section(epochs=3, lr=1000.0)
    )
    state = tmp_path / "s.pt"
    err = one_line(
        fails(
            capsys,
            fashion_train.main,
            arch="fc",
            data=tiny_fashion,
            model_out=tmp_path / "m.safetensors",
            history=tmp_path / "h.json",
            state=state,
            params=params,
        )
    )
    assert not (tmp_path / "m.safetensors").exists()
    return err, state


def test_non_finite_loss_stops_the_stage_naming_the_step(
    tiny_fashion, tmp_path, capsys
) -> None:
    err, state = _diverge(tiny_fashion, tmp_path, capsys)
    m = re.search(r"non-finite loss \((-?inf|nan)\) at epoch (\d+) step (\d+)", err)
    assert m, err
    epoch = int(m.group(2))
    assert "lower lr" in err
    if epoch > 1:  # the last complete epoch is kept for a resume
        assert load_state(state)["epoch"] == epoch - 1
    else:
        assert not state.exists()


def test_non_finite_loss_in_the_first_epoch_claims_no_state(
    tiny_fashion, tmp_path, capsys
) -> None:
    err, state = _diverge(tiny_fashion, tmp_path, capsys)
    assert state.exists() or "kept the last good state" not in err
