"""The measurements of the GPU check that are not benchmark pairs (see
benchmarks/gpu_check.sh): the machine, Fashion-MNIST epoch times, Inception
throughput. Each prints one summary line and writes one JSON file.

    python -m benchmarks.gpu_parts env --json OUT/env.json
    python -m benchmarks.gpu_parts fashion --device cuda --epochs 2 --json F
    python -m benchmarks.gpu_parts inception --device cuda --n 4096 --json F

``fashion`` trains with the pipeline's own code (``fashion_train``'s
``train_fashion``) and ``params.yaml``'s sections, on all 60,000 training
images read from ``fashion.data.root`` (or ``CVAE_FASHION_ROOT``), with only
the device and the epochs changed; the Trainer's per-epoch seconds are the
figures. ``inception`` times the FID feature extractor (torch-fidelity's
Inception-v3, uint8 in, 2048-d out, resize to 299 included) on Fashion-MNIST
sized inputs; without the converted weights file it runs the same network with
random weights (the same arithmetic, so the same speed), and says so.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
FID_WEIGHTS = ROOT / "data" / "fid" / "inception-2015-12-05.pth"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def machine() -> dict[str, Any]:
    """Card, driver, CUDA and torch versions, CPUs."""
    out: dict[str, Any] = {
        "torch": torch.__version__,
        "cuda_runtime": torch.version.cuda,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        out |= {
            "gpu": props.name,
            "gpu_memory_mib": props.total_memory // 2**20,
            "multiprocessors": props.multi_processor_count,
            "cudnn": torch.backends.cudnn.version(),
        }
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            out["driver"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
    return out


# The end of a training epoch's line: "... | 163.2 s, 261 img/s".
EPOCH_SPEED = re.compile(r"\| ([\d.]+) s, (\d+) img/s")


def fashion_epochs(
    device: str, archs: list[str], epochs: int, train_limit: int | None
) -> dict[str, Any]:
    """Seconds per epoch of the pipeline's training of each arch on all of
    Fashion-MNIST's training images, or ``train_limit`` of them (held-out loss
    on the 10,000 test images included, as in the stage)."""
    from cvae.data.fashion import build_dataset
    from cvae.params.loading import load_params
    from cvae.training.fashion import train_fashion

    p = load_params(ROOT / "params.yaml").fashion
    root = os.environ.get("CVAE_FASHION_ROOT", p.data.root)
    p = p.model_copy(
        update={
            "train": p.train.model_copy(update={"device": device, "epochs": epochs}),
            "model": p.model.model_copy(
                update={
                    a: getattr(p.model, a).model_copy(update={"epochs": epochs})
                    for a in archs
                    if "epochs" in type(getattr(p.model, a)).model_fields
                }
            ),
        }
    )
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "dataset.npz"
        counts = build_dataset(
            root, data, train_limit=train_limit, test_limit=None, seed=0
        )
        for arch in archs:
            log = io.StringIO()
            t0 = time.perf_counter()
            with contextlib.redirect_stdout(log):
                hist = train_fashion(
                    arch,
                    p,
                    data,
                    Path(tmp) / f"{arch}.safetensors",
                    Path(tmp) / f"{arch}.json",
                    Path(tmp) / f"{arch}.pt",
                )
            wall = time.perf_counter() - t0
            speeds = [EPOCH_SPEED.search(x) for x in log.getvalue().splitlines()]
            speeds = [m for m in speeds if m]
            results[arch] = {
                "epoch_seconds": [float(m[1]) for m in speeds],
                "images_per_s": [float(m[2]) for m in speeds],
                "last_loss": hist[-1]["loss"],
                "wall_seconds_with_prior_fit_and_save": round(wall, 2),
                "n_train": counts["train"],
                "batch_size": p.train.batch_size,
            }
    return results


class _FirstOutput(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)[0]


def inception(device: str, n: int, batch_size: int) -> dict[str, Any]:
    """Images/s through the FID feature extractor (28 px grayscale in, as the
    Fashion evaluation feeds it; the resize to 299 is part of the network)."""
    from cvae.core.device import resolve_device
    from cvae.evaluation.inception import (
        _fidelity_skeleton,
        inception_features,
        load_inception,
    )

    dev = resolve_device(device)
    real = FID_WEIGHTS.is_file()
    if real:
        model = load_inception(FID_WEIGHTS)
    else:  # torch-fidelity's module returns a tuple of the features asked for
        model = _FirstOutput(_fidelity_skeleton()).to(memory_format=torch.channels_last)
    model = model.to(dev).eval()
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=gen)
    inception_features(model, images[:batch_size], batch_size=batch_size)  # warm-up
    sync(dev)
    t0 = time.perf_counter()
    feats = inception_features(model, images, batch_size=batch_size)
    sync(dev)
    wall = time.perf_counter() - t0
    assert feats.shape == (n, 2048) and torch.isfinite(feats).all()
    out = {
        "images_per_s": n / wall,
        "n": n,
        "batch_size": batch_size,
        "weights": "converted 2015-12-05" if real else "random (same network)",
        "device": str(dev),
        # the 10,000-image protocol: 60,000 Inception passes (test images,
        # reconstructions, generations, and the real reference)
        "protocol_minutes_at_this_rate": 60_000 / (n / wall) / 60,
    }
    if dev.type == "cuda":
        out["peak_cuda_mib"] = torch.cuda.max_memory_allocated(dev) / 2**20
    return out


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.gpu_parts")
    sub = ap.add_subparsers(dest="part", required=True)
    e = sub.add_parser("env")
    f = sub.add_parser("fashion")
    f.add_argument("--archs", nargs="+", default=["conv", "gmm"])
    f.add_argument("--epochs", type=int, default=2)
    f.add_argument("--train-limit", type=int, help="fewer training images")
    i = sub.add_parser("inception")
    i.add_argument("--n", type=int, default=4096)
    i.add_argument("--batch-size", type=int, default=256)
    for s in (f, i):
        s.add_argument("--device", default="auto")
    for s in (e, f, i):
        s.add_argument("--json", type=Path, required=True)
    args = ap.parse_args()

    from cvae.core.files import write_json

    if args.part == "env":
        out = machine()
        line = (
            f"env: {out.get('gpu', 'no GPU')}, driver {out.get('driver', '-')}, "
            f"torch {out['torch']} (CUDA {out['cuda_runtime']}), {out['cpus']} CPUs"
        )
    elif args.part == "fashion":
        out = fashion_epochs(args.device, args.archs, args.epochs, args.train_limit)
        line = "fashion: " + "; ".join(
            f"{a} epochs {', '.join(f'{s:.1f}' for s in r['epoch_seconds'])} s "
            f"({r['images_per_s'][-1]:.0f} images/s)"
            for a, r in out.items()
        )
    else:
        out = inception(args.device, args.n, args.batch_size)
        line = (
            f"inception: {out['images_per_s']:.0f} images/s at batch "
            f"{out['batch_size']} ({out['weights']} weights), 10k protocol "
            f"~{out['protocol_minutes_at_this_rate']:.1f} min of Inception"
        )
    write_json(args.json, out)
    print(line, flush=True)


if __name__ == "__main__":
    sys.exit(main())
