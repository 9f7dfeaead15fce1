"""The CUDA paths: training every architecture, bf16 autocast, the stream loader
with pinned memory and workers, ``cvae generate --device cuda`` against the CPU,
and resuming a CUDA run.

Run on a machine with a GPU: ``pytest -m cuda`` (benchmarks/gpu_check.sh does).
``CVAE_TEST_DEVICE=cpu pytest -m cuda`` runs the same tests on the CPU, as the
check's rehearsal does, so that a broken test is found before a GPU is lent.
The default test run leaves them out (see pyproject.toml).
"""

from __future__ import annotations

import io
import os

import numpy as np
import pyarrow as pa
import pytest
import torch
from conftest import make_model, model_config, train_config, typed_params
from PIL import Image

from cvae.data import fashion
from cvae.data.batches import MemoryBatches
from cvae.data.prompts import CLASS_NAMES
from cvae.models import build_model
from cvae.models.checkpoint import save_model
from cvae.training.state import load_state
from cvae.training.trainer import Trainer

pytestmark = pytest.mark.cuda
DEVICE = os.environ.get("CVAE_TEST_DEVICE", "cuda")
ON_CUDA = DEVICE.startswith("cuda")


@pytest.fixture(autouse=True)
def _need_device() -> None:
    if ON_CUDA and not torch.cuda.is_available():
        pytest.skip("no CUDA GPU here (CVAE_TEST_DEVICE=cpu runs these on the CPU)")


def _fashion(tiny_fashion, n: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    d = fashion.load_dataset(tiny_fashion)
    x = torch.from_numpy(d["train_images"][:n]).unsqueeze(1)
    return x, torch.from_numpy(d["train_labels"][:n])


def _coco_images(coco_sample, n: int, size: int) -> torch.Tensor:
    """``n`` real COCO images, center-cropped to ``size``, uint8 (n, 3, S, S)."""
    from cvae.data.shards import center_crop_resize, load_rgb

    files = sorted((coco_sample / "images").iterdir())[:n]
    arrays = [np.asarray(center_crop_resize(load_rgb(f), size)) for f in files]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def _trainer(model, data, tmp_path, *, epochs: int, name: str = "s.pt", **cfg):
    return Trainer(
        model,
        train_config(epochs=epochs, device=DEVICE, **cfg),
        data,
        state_path=tmp_path / name,
        history_path=tmp_path / f"{name}.json",
        run_id="run",
        log=lambda line: None,
    )


@pytest.mark.parametrize("arch", ["fc", "conv", "gmm", "image"])
def test_every_arch_trains_on_the_device(
    arch, tiny_fashion, coco_sample, tmp_path
) -> None:
    torch.manual_seed(0)
    if arch == "image":
        x = _coco_images(coco_sample, 16, 64)
        c = torch.randn(len(x), 512)  # the device path does not care which vectors
        model = build_model("image", model_config("image", cond_dim=512))
    else:
        x, c = _fashion(tiny_fashion)
        model = make_model(arch)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    t = _trainer(model, MemoryBatches(x, c, batch_size=8, seed=0), tmp_path, epochs=2)
    hist = t.fit()
    assert t.device.type == torch.device(DEVICE).type
    assert next(t.model.parameters()).device.type == t.device.type
    assert len(hist) == 2 and all(np.isfinite(r["loss"]) for r in hist)
    after = t.model.state_dict()
    assert any(not torch.equal(before[k], after[k].cpu()) for k in before)
    if arch == "gmm":  # the fitted prior runs on the device too
        t.model.fit_prior(x, c, batch_size=64, seed=0)
        sample = t.model.sample(torch.arange(10, device=t.device))
        assert sample.shape == (10, 1, 28, 28) and torch.isfinite(sample).all()


def test_vaegan_trains_against_its_critic_on_the_device(tiny_fashion, tmp_path):
    """The adversarial loop (critic, adaptive weight) under bf16 autocast."""
    from cvae.training.adversarial import AdversarialTrainer

    x, c = _fashion(tiny_fashion)
    torch.manual_seed(0)
    adversarial = typed_params().fashion.model.vaegan.adversarial
    t = AdversarialTrainer(
        make_model("vaegan"),
        train_config(epochs=2, device=DEVICE, beta=0.02),
        MemoryBatches(x, c, batch_size=32, seed=0),
        state_path=tmp_path / "s.pt",
        run_id="run",
        log=lambda line: None,
        adversarial=adversarial.model_copy(update={"start_epoch": 1}),
    )
    hist = t.fit()
    assert next(t.critic.parameters()).device.type == t.device.type
    assert all(np.isfinite(r["loss"]) and np.isfinite(r["critic"]) for r in hist)
    assert hist[0]["critic"] == 0 < hist[1]["critic"]
    t.model.fit_prior(x, c, batch_size=64, seed=0)
    sample = t.model.sample(torch.arange(10, device=t.device))
    assert sample.shape == (10, 1, 28, 28) and torch.isfinite(sample).all()


def test_bf16_autocast_on_cuda_only(tiny_fashion, tmp_path) -> None:
    x, y = _fashion(tiny_fashion)
    torch.manual_seed(0)
    model = make_model("conv")
    t = _trainer(model, MemoryBatches(x, y, batch_size=32, seed=0), tmp_path, epochs=1)
    assert t.cfg.amp  # params.yaml asks for it
    assert t.amp == ON_CUDA
    seen: list[torch.dtype] = []
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    first.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    t.fit()
    assert seen and set(seen) == {torch.bfloat16 if ON_CUDA else torch.float32}
    if ON_CUDA:  # channels_last weights, float32 master weights
        assert first.weight.dtype == torch.float32
        assert first.weight.is_contiguous(memory_format=torch.channels_last)


def test_stream_loader_pins_memory_and_feeds_the_device(coco_sample, tmp_path) -> None:
    from cvae.data.coco import load_coco_captions
    from cvae.data.shard_writer import write_shards
    from cvae.data.stream import ShardStream, id_lookup

    coco = load_coco_captions(coco_sample / "captions.json")
    imgs = sorted(coco.imgs.values(), key=lambda i: i["id"])[:24]
    manifest = pa.table(
        {
            "image_id": [i["id"] for i in imgs],
            "file_name": [i["file_name"] for i in imgs],
            "split": ["train"] * len(imgs),
            "subsets": [["all"]] * len(imgs),
            "captions": [["a caption."]] * len(imgs),
        }
    )
    out = write_shards(
        manifest, coco_sample / "images", tmp_path / "shards", size=64, shard_size=6
    )
    assert out["written"] == 24 and len(out["shards"]) == 4
    ids = np.array([i["id"] for i in imgs])
    conds = torch.randn(len(ids), 512)
    stream = ShardStream(
        tmp_path / "shards",
        id_lookup(ids, conds),
        n_items=24,
        batch_size=4,
        num_workers=2,
        pin_memory=ON_CUDA,
    )
    assert stream.num_workers == 2 and stream.steps == 6
    batches = list(stream.epoch(0))
    assert len(batches) == 6
    for images, c in batches:
        assert images.shape == (4, 3, 64, 64) and images.dtype == torch.uint8
        assert c.shape == (4, 512)
        assert images.is_pinned() == ON_CUDA
    torch.manual_seed(0)
    model = build_model("image", model_config("image", cond_dim=512))
    t = _trainer(model, stream, tmp_path, epochs=1, batch_size=4)
    hist = t.fit()
    assert len(hist) == 1 and np.isfinite(hist[0]["loss"])


def _grid(path) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(path.read_bytes())).convert("L"))


def test_generate_on_the_device_matches_the_cpu(tiny_fashion, tmp_path) -> None:
    """Same seed, same images: z is drawn on the CPU; the decoders' arithmetic
    may differ in the last bits, so a pixel may move by one level at most."""
    from typer.testing import CliRunner

    from cvae_cli.main import app

    x, y = _fashion(tiny_fashion)
    torch.manual_seed(0)
    model = make_model("conv")
    _trainer(
        model, MemoryBatches(x, y, batch_size=32, seed=0), tmp_path, epochs=1
    ).fit()
    path = tmp_path / "conv.safetensors"
    info = {"condition": "label", "classes": list(CLASS_NAMES), "epochs": 1}
    save_model(path, model.cpu(), "conv", info)
    runner = CliRunner()
    grids = {}
    for device in ("cpu", DEVICE):
        out = tmp_path / f"{device}.png"
        r = runner.invoke(
            app,
            [
                "generate",
                "Make a dress",
                "-m",
                str(path),
                "-n",
                "16",
                "-s",
                "7",
                "-o",
                str(out),
                "--device",
                device,
            ],
        )
        assert r.exit_code == 0, r.output
        grids[device] = _grid(out).astype(int)
    diff = np.abs(grids["cpu"] - grids[DEVICE])
    print(
        f"generate {DEVICE} vs cpu: max |diff| {diff.max()} levels, "
        f"{(diff == 0).mean():.4%} pixels equal"
    )
    assert diff.max() <= 1
    assert (diff == 0).mean() >= 0.99


def test_resume_on_the_device_continues_the_run(tiny_fashion, tmp_path) -> None:
    x, y = _fashion(tiny_fashion)

    def run(folder: str, epochs: int) -> Trainer:
        torch.manual_seed(0)
        t = _trainer(
            make_model("fc", hidden_dims=[64, 32], latent_dim=8),
            MemoryBatches(x, y, batch_size=32, seed=0),
            tmp_path / folder,
            epochs=epochs,
        )
        (tmp_path / folder).mkdir(exist_ok=True)
        t.fit()
        return t

    full = run("full", 3)
    run("cut", 2)
    state = load_state(tmp_path / "cut" / "s.pt")
    assert ("cuda_rng" in state) == ON_CUDA
    assert all(v.device.type == "cpu" for v in state["model"].values())
    resumed = run("cut", 3)
    assert resumed.start_epoch == 2 and len(resumed.history) == 3
    worst = max(
        (a - b).abs().max().item()
        for a, b in zip(
            full.model.state_dict().values(), resumed.model.state_dict().values()
        )
    )
    print(f"resume on {DEVICE}: max |weight diff| vs uninterrupted {worst:.3g}")
    assert worst <= 1e-5
    # A state written on the device resumes on the CPU as well.
    torch.manual_seed(0)
    cpu = Trainer(
        make_model("fc", hidden_dims=[64, 32], latent_dim=8),
        train_config(epochs=3, device="cpu"),
        MemoryBatches(x, y, batch_size=32, seed=0),
        state_path=tmp_path / "cut" / "s.pt",
        run_id="run",
        log=lambda line: None,
    )
    assert cpu.try_resume() and cpu.start_epoch == 3


def test_params_device_auto_picks_the_gpu() -> None:
    from cvae.core.device import resolve_device

    assert typed_params().fashion.train.device == "auto"
    assert resolve_device("auto").type == (
        "cuda" if torch.cuda.is_available() else "cpu"
    )
