"""Run every benchmark case, each in a fresh process, and print one table.

    python -m benchmarks                      # device auto, 64 px
    python -m benchmarks --device cuda --size 128 --out benchmarks/results-cuda.md

A case's process reports its own peak resident memory (and peak CUDA memory),
so cases do not inherit each other's allocations. Ratios are ours / baseline
from the same invocation, on the same machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.memory import TreePeak

ROOT = Path(__file__).resolve().parents[1]
PAIRS = [  # (what, ours, baseline, unit key)
    ("training loop", "train_ours", "train_seed", "images_per_s"),
    ("shard stage", "shard_ours", "shard_naive", "images_per_s"),
    ("embed stage, captions", "embed_ours", "embed_naive", "captions_per_s"),
    ("embed stage, images", "embed_ours", "embed_naive", "images_per_s"),
    ("embed, captions vs 77-token", "embed_ours", "embed_padded", "captions_per_s"),
    ("embed, images vs before", "embed_ours", "embed_padded", "images_per_s"),
    (
        "embed, image + 5 captions vs before",
        "embed_ours",
        "embed_padded",
        "images_with_captions_per_s",
    ),
]


CASE_NAMES = [
    "train_ours",
    "train_seed",
    "shard_ours",
    "shard_naive",
    "embed_ours",
    "embed_naive",
    "embed_padded",
]


def run_one(name: str, args: argparse.Namespace) -> dict:
    cmd = [
        sys.executable,
        "-c",
        "import json, sys; from benchmarks.cases import run_case; "
        "a = sys.argv[1:]; "
        "print('RESULT ' + json.dumps(run_case(a[0], a[1], *map(int, a[2:]))))",
        name,
        args.device,
        str(args.size),
        str(args.steps),
        str(args.batch_size),
    ]
    path = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = os.environ | {"PYTHONPATH": os.pathsep.join(path)}  # keep a site folder
    pipe = subprocess.PIPE
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=pipe, stderr=pipe, text=True)
    with TreePeak(proc.pid) as peak:  # the case, its workers and children
        stdout, stderr = proc.communicate()
    lines = [ln for ln in stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = (stderr or stdout).strip().splitlines()[-1:] or ["no output"]
        sys.exit(f"benchmark case {name} failed: {tail[0]}")
    return json.loads(lines[-1][len("RESULT ") :]) | {"peak_tree_mib": peak.mib}


def fmt(v: float | None, spec: str = ".1f") -> str:
    return "n/a" if v is None else format(v, spec)


def table(results: dict[str, dict], args: argparse.Namespace) -> str:
    dev = results["train_ours"]["device"]
    head = (
        f"Device: {dev} ({platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} logical CPUs), {args.size} px, batch {args.batch_size}, "
        f"{args.steps}+ training steps per loop, COCO sample "
        f"({time.strftime('%Y-%m-%d')}).\n\n"
        "| what | ours | seed-style / naive | ratio | peak RSS MiB (process tree) "
        "ours / base "
        "| peak CUDA MiB ours / base | GPU busy ours / base |\n"
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n"
    )
    rows = []
    for what, ours, base, key in PAIRS:
        if ours not in results or base not in results:
            continue  # a pair whose cases were not asked for
        o, b = results[ours], results[base]
        unit = key.replace("_per_s", "/s")
        rows.append(
            f"| {what} | {o[key]:.1f} {unit} | {b[key]:.1f} {unit} "
            f"| **{o[key] / b[key]:.1f}x** "
            f"| {o['peak_tree_mib']:.0f} / {b['peak_tree_mib']:.0f} "
            f"| {fmt(o.get('peak_cuda_mib'), '.0f')} / "
            f"{fmt(b.get('peak_cuda_mib'), '.0f')} "
            f"| {fmt(o.get('gpu_busy'), '.2f')} / {fmt(b.get('gpu_busy'), '.2f')} |"
        )
    return head + "\n".join(rows) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    ap.add_argument("--size", type=int, default=64, choices=(64, 128, 256))
    ap.add_argument("--steps", type=int, default=8, help="timed training steps (min)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--out", type=Path, help="also write the table (markdown) here")
    ap.add_argument("--json", type=Path, help="also write the raw results here")
    ap.add_argument(
        "--cases",
        nargs="+",
        choices=CASE_NAMES,
        default=CASE_NAMES,
        metavar="CASE",
        help=f"run only these cases (default: all of {', '.join(CASE_NAMES)})",
    )
    args = ap.parse_args()

    from benchmarks.cases import SAMPLE
    from cvae.core.files import write_json

    if not (SAMPLE / "captions.json").is_file():
        sys.exit(
            f"benchmark data {SAMPLE} not found: run from a clone beside ../shared "
            "or set CVAE_SHARED_DATA to a folder holding coco-sample/"
        )
    results = {}
    for name in args.cases:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        results[name] = run_one(name, args)
        print(f"  {json.dumps(results[name])}", file=sys.stderr, flush=True)
    text = table(results, args)
    print(text)
    if args.out:
        from cvae.core.files import atomic_open

        with atomic_open(args.out, "w") as f:
            f.write(text)
    if args.json:
        write_json(
            args.json,
            {
                "args": vars(args) | {"out": str(args.out), "json": str(args.json)},
                "results": results,
            },
        )


if __name__ == "__main__":
    main()
