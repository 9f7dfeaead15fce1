"""One benchmark case per function; each runs in its own process (see __main__).

Data: every image of the shared COCO sample with its captions (real JPEGs, real
captions). Model: the pipeline's ImageCVAE with ``coco.model`` from
params.yaml at the chosen size; CLIP: open_clip ViT-B-32 with random weights
(the same compute as pretrained ones; no weights exist offline).

Ours vs seed-style, on the same data, model, batch size and device:

- ``train_ours``: the project's ``Trainer``: images decoded and resized once
  (by the shard stage), caption embeddings computed once (by the embed stage)
  and drawn per step from memory; on CUDA bf16 autocast and channels_last.
  Only the training is timed: the one-off stage costs are the shard and
  embed cases below.
- ``train_seed``: seed 000's loop: every step opens and decodes each JPEG
  with PIL and transforms it, and calls CLIP once per sentence of each caption
  (``encode_condition``), in fp32.
- ``shard_*`` / ``embed_*``: the shard and embed stages' code vs naive per-item
  loops (one PNG file per image; one CLIP call per sentence / per image).
"""

from __future__ import annotations

import os
import random
import resource
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from cvae.params.loading import load_params
from cvae.params.schema import Params

ROOT = Path(__file__).resolve().parents[1]
# The shared COCO sample; CVAE_SHARED_DATA points elsewhere (the GPU check's copy).
SHARED_DATA = Path(os.environ.get("CVAE_SHARED_DATA", ROOT / ".." / "shared" / "data"))
SAMPLE = (SHARED_DATA / "coco-sample").resolve()
CLIP_MODEL = "ViT-B-32"


@dataclass
class Sample:
    """The benchmark data: N image files and their captions."""

    files: list[Path]
    captions: list[list[str]]  # (N, ~5)
    ids: list[int]


def load_sample(limit: int | None = None) -> Sample:
    from cvae.data.coco import load_coco_captions

    coco = load_coco_captions(SAMPLE / "captions.json")
    ids = sorted(i for i in coco.getImgIds() if coco.getAnnIds(imgIds=[i]))
    ids = [i for i in ids if (SAMPLE / "images" / coco.imgs[i]["file_name"]).is_file()]
    ids = ids[:limit] if limit else ids
    files = [SAMPLE / "images" / coco.imgs[i]["file_name"] for i in ids]
    caps = [
        [a["caption"] for a in coco.loadAnns(coco.getAnnIds(imgIds=[i]))] for i in ids
    ]
    return Sample(files, caps, ids)


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux ru_maxrss is KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def params() -> Params:
    """The project's params.yaml, validated by the one schema."""
    return load_params(ROOT / "params.yaml")


def model_params(size: int) -> dict[str, Any]:
    """The pipeline's ImageConfig at ``size``: coco.model and the top-level
    conditioning, RGB, ViT-B-32's 512-d condition."""
    p = params()
    return p.coco.model.model_dump() | {
        "image_size": size,
        "in_channels": 3,
        "conditioning": p.conditioning,
        "cond_dim": 512,
    }


def gpu_busy(device: torch.device, fn: Callable[[], None]) -> float | None:
    """Fraction of the wall time of ``fn`` during which CUDA kernels ran.

    Kernel times come from the PyTorch profiler (CUPTI); overlapping kernels
    would count twice, but one stream runs them one after another.
    """
    if device.type != "cuda":
        return None
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        wall = time.perf_counter() - t0
    busy_us = sum(  # kernels and copies as CUPTI timed them on the device
        e.time_range.elapsed_us()
        for e in prof.events()
        if e.device_type == DeviceType.CUDA
    )
    return min(busy_us / 1e6 / wall, 1.0)


# --------------------------------------------------------------------------- train
def train_ours(device: torch.device, size: int, steps: int, batch_size: int) -> dict:
    from cvae.clip.weights import load_clip
    from cvae.data.batches import MemoryBatches
    from cvae.data.pairs import CaptionChoice
    from cvae.data.shards import center_crop_resize, load_rgb
    from cvae.models import build_model
    from cvae.training.trainer import Trainer

    s = load_sample()
    # The shard and embed stages' work, done once before training (not timed).
    images = (
        torch.from_numpy(
            np.stack(
                [np.asarray(center_crop_resize(load_rgb(f), size)) for f in s.files]
            )
        )
        .permute(0, 3, 1, 2)
        .contiguous()
    )
    enc = load_clip(CLIP_MODEL, "none", str(device), seed=0)
    flat = [c for caps in s.captions for c in caps]
    vecs = torch.from_numpy(enc.embed_texts(flat, batch_size=256))
    count = torch.tensor([len(c) for c in s.captions])
    first = torch.cumsum(count, 0) - count
    conds = CaptionChoice(vecs, first, count)
    del enc
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)

    n = len(images)
    epochs = max(2, -(-steps * batch_size // n))  # >= steps batches
    tmp = Path(tempfile.mkdtemp())

    def fit(e: int, tag: str) -> Trainer:
        torch.manual_seed(0)
        cfg = params().coco.train.model_copy(
            update={"epochs": e, "batch_size": batch_size, "device": str(device)}
        )
        t = Trainer(
            build_model("image", model_params(size)),
            cfg,
            MemoryBatches(images, conds, batch_size=batch_size, seed=cfg.seed),
            state_path=tmp / f"{tag}.pt",
            log=lambda line: None,
        )
        t.fit()
        return t

    try:
        fit(1, "warmup")
        sync(device)
        t0 = time.perf_counter()
        fit(epochs, "timed")
        sync(device)
        wall = time.perf_counter() - t0
        busy = gpu_busy(device, lambda: fit(1, "profiled"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "images_per_s": epochs * n / wall,
        "steps": epochs * -(-n // batch_size),
        "gpu_busy": busy,
    }


def _seed_transform(size: int) -> Callable:
    from torchvision import transforms

    return transforms.Compose(
        [transforms.Resize(size), transforms.CenterCrop(size), transforms.ToTensor()]
    )


def train_seed(device: torch.device, size: int, steps: int, batch_size: int) -> dict:
    """Seed 000's loop: PIL decode per step, CLIP per sentence per step, fp32."""
    from PIL import Image

    from cvae.clip.encoder import split_sentences
    from cvae.clip.weights import load_clip
    from cvae.models import build_model
    from cvae.training.losses import elbo_loss

    s = load_sample()
    enc = load_clip(CLIP_MODEL, "none", str(device), seed=0)
    clip_model, tokenize = enc.model.float(), enc.tokenizer
    transform = _seed_transform(size)
    torch.manual_seed(0)
    model = build_model("image", model_params(size)).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    rng = random.Random(0)

    def encode_condition(sentences: list[str]) -> torch.Tensor:
        with torch.no_grad():
            emb = [
                clip_model.encode_text(tokenize([t]).to(device)).float()
                for t in sentences
            ]
            return torch.mean(torch.stack(emb), dim=0)  # (1, 512)

    def step() -> None:
        idx = [rng.randrange(len(s.files)) for _ in range(batch_size)]
        x = torch.stack(
            [transform(Image.open(s.files[i]).convert("RGB")) for i in idx]
        ).to(device)
        c = torch.cat(
            [encode_condition(split_sentences(rng.choice(s.captions[i]))) for i in idx]
        )
        logits, mu, logvar = model(x, c)
        loss = elbo_loss(logits, x, mu, logvar)["loss"] / batch_size
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()  # warm-up
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    wall = time.perf_counter() - t0
    busy = gpu_busy(device, lambda: [step() for _ in range(max(1, steps // 4))])
    return {"images_per_s": steps * batch_size / wall, "steps": steps, "gpu_busy": busy}


# --------------------------------------------------------------------------- stages
SHARD_IMAGES = 2000  # the sample's files cycled: enough work to amortise workers


def shard_files() -> list[Path]:
    files = load_sample().files
    return [files[i % len(files)] for i in range(SHARD_IMAGES)]


def shard_ours(device: torch.device, size: int, **_: Any) -> dict:
    """The shard stage's write_shards, workers: 0 (one per CPU) as in params."""
    from cvae.data.shard_writer import write_shards

    files = shard_files()
    s = load_sample()
    tmp = Path(tempfile.mkdtemp())
    for i, f in enumerate(files):  # distinct names, as distinct images have
        (tmp / f"{i}.jpg").symlink_to(f)
    table = pa.table(
        {
            "image_id": list(range(len(files))),
            "file_name": [f"{i}.jpg" for i in range(len(files))],
            "split": ["train"] * len(files),
            "subsets": [["all"]] * len(files),
            "captions": [s.captions[i % len(s.files)] for i in range(len(files))],
        }
    )
    try:
        t0 = time.perf_counter()
        out = write_shards(
            table, tmp, tmp / "shards", size=size, shard_size=1000, workers=0
        )
        wall = time.perf_counter() - t0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"images_per_s": out["written"] / wall}


def shard_naive(device: torch.device, size: int, **_: Any) -> dict:
    """One PNG file per image: open, seed transform, save."""
    from PIL import Image
    from torchvision.transforms.functional import to_pil_image

    files = shard_files()
    transform = _seed_transform(size)
    tmp = Path(tempfile.mkdtemp())
    try:
        t0 = time.perf_counter()
        for i, f in enumerate(files):
            x = transform(Image.open(f).convert("RGB"))
            to_pil_image(x).save(tmp / f"{i}.png")
        wall = time.perf_counter() - t0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"images_per_s": len(files) / wall}


def embed_ours(device: torch.device, **_: Any) -> dict:
    """The embed stage's path: text batches sorted by token count and cut after
    their longest sentence; images decoded in ``embed.num_workers`` workers while CLIP
    runs; both towers' last block at the pooled token only."""
    from cvae.clip.weights import load_clip
    from cvae.data.image_files import preprocessed_batches

    files, captions = embed_workload(device)
    enc = load_clip(CLIP_MODEL, "none", str(device), seed=0)
    flat = [c for caps in captions for c in caps]
    enc.embed_texts(flat[:64], batch_size=64)  # warm-up
    sync(device)
    t0 = time.perf_counter()
    enc.embed_texts(flat, batch_size=64)
    sync(device)
    text_wall = time.perf_counter() - t0
    t0 = time.perf_counter()
    batches = preprocessed_batches(
        files, enc.preprocess, batch_size=64, num_workers=params().embed.num_workers
    )
    enc.embed_pixels(pixels for _, pixels in batches if pixels is not None)
    sync(device)
    return _embed_rates(len(flat), len(files), text_wall, time.perf_counter() - t0)


EMBED_IMAGES_CUDA = 4096  # the sample cycled: a GPU embeds the 249 images in a blink


def embed_workload(device: torch.device) -> tuple[list[Path], list[list[str]]]:
    """The embed cases' images and their captions: the sample once on the CPU,
    cycled to ``EMBED_IMAGES_CUDA`` images on a GPU."""
    s = load_sample()
    n = EMBED_IMAGES_CUDA if device.type == "cuda" else len(s.files)
    idx = [i % len(s.files) for i in range(n)]
    return [s.files[i] for i in idx], [s.captions[i] for i in idx]


def _embed_rates(captions: int, images: int, text_s: float, image_s: float) -> dict:
    return {
        "captions_per_s": captions / text_s,
        "images_per_s": images / image_s,
        "images_with_captions_per_s": images / (text_s + image_s),
    }


def embed_padded(device: torch.device, **_: Any) -> dict:
    """The embed stage before trimming: batched, every sentence padded to 77
    tokens; images decoded and preprocessed in the main process; open_clip's own
    forward passes (whole last blocks), fp16 on CUDA as the stage."""
    from cvae.clip.encoder import split_sentences
    from cvae.clip.weights import load_clip
    from cvae.data.shards import load_rgb

    s = load_sample()
    enc = load_clip(CLIP_MODEL, "none", str(device), seed=0)
    flat = [c for caps in s.captions for c in caps]
    sentences = [t for c in flat for t in split_sentences(c)]
    with torch.inference_mode(), enc._autocast():
        enc.model.encode_text(enc.tokenizer(sentences[:64]).to(device))  # warm-up
        sync(device)
        t0 = time.perf_counter()
        for i in range(0, len(sentences), 64):
            enc.model.encode_text(enc.tokenizer(sentences[i : i + 64]).to(device))
        sync(device)
        text_wall = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i in range(0, len(s.files), 64):
            x = torch.stack([enc.preprocess(load_rgb(f)) for f in s.files[i : i + 64]])
            enc.model.encode_image(x.to(device)).float().cpu()
        sync(device)
    return _embed_rates(len(flat), len(s.files), text_wall, time.perf_counter() - t0)


def embed_naive(device: torch.device, **_: Any) -> dict:
    """One CLIP call per sentence of each caption, one per image, fp32."""
    from PIL import Image

    from cvae.clip.encoder import split_sentences
    from cvae.clip.weights import load_clip

    s = load_sample()
    enc = load_clip(CLIP_MODEL, "none", str(device), seed=0)
    model = enc.model.float()
    flat = [c for caps in s.captions for c in caps]
    with torch.no_grad():
        model.encode_text(enc.tokenizer(["warm up"]).to(device))
        sync(device)
        t0 = time.perf_counter()
        for cap in flat:
            emb = [
                model.encode_text(enc.tokenizer([t]).to(device))
                for t in split_sentences(cap)
            ]
            torch.stack(emb).mean(0).cpu()
        sync(device)
        text_wall = time.perf_counter() - t0
        t0 = time.perf_counter()
        for f in s.files:
            x = enc.preprocess(Image.open(f).convert("RGB")).unsqueeze(0)
            model.encode_image(x.to(device)).cpu()
        sync(device)
        image_wall = time.perf_counter() - t0
    return {
        "captions_per_s": len(flat) / text_wall,
        "images_per_s": len(s.files) / image_wall,
    }


CASES: dict[str, Callable[..., dict]] = {
    "train_ours": train_ours,
    "train_seed": train_seed,
    "shard_ours": shard_ours,
    "shard_naive": shard_naive,
    "embed_ours": embed_ours,
    "embed_naive": embed_naive,
    "embed_padded": embed_padded,
}


def run_case(name: str, device: str, size: int, steps: int, batch_size: int) -> dict:
    """Run one case in this process; add its peak host (and CUDA) memory."""
    from cvae.core.device import resolve_device

    dev = resolve_device(device)
    torch.manual_seed(0)
    out = CASES[name](dev, size=size, steps=steps, batch_size=batch_size)
    out["peak_rss_mib"] = peak_rss_mib()
    if dev.type == "cuda":
        out["peak_cuda_mib"] = torch.cuda.max_memory_allocated(dev) / 2**20
    out["device"] = str(dev)
    return out
