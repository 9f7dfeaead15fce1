"""Every long-text stage at scale: wall time, items/s and peak memory of the
whole process tree, per stage, per N and image size.

    python -m benchmarks.scale --n 1000 5000 --sizes 64 256 --out scale-cpu.md

Runs the real stage modules (as `dvc repro` does, one process each) on the
fixture of ``benchmarks.scale_fixture`` (built on demand), with the repository's
params except: the fixture's paths, ``size``, and one training epoch. The
caption filter also runs on a train2017-sized captions file (``--filter-k``).
Items: captions for the filter, images for the other stages (held-out images for
evaluate). Run it on idle cores: every number is wall time on this machine.
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

import yaml

from benchmarks.memory import TreePeak
from benchmarks.scale_fixture import OUT, build, captions_only

ROOT = Path(__file__).resolve().parents[1]
FID_WEIGHTS = ROOT / "data" / "fid" / "inception-2015-12-05.pth"
STAGES = ("shard", "train", "evaluate")  # per image size, in this order


def opts(**kw: object) -> list[str]:
    """Command-line options: ``opts(text_emb=p)`` -> ``["--text-emb", "p"]``."""
    return [x for k, v in kw.items() for x in (f"--{k.replace('_', '-')}", str(v))]


def run_stage(module: str, args: list[str], cwd: Path) -> dict:
    """Run ``python -m stages.<module> ...``: wall seconds and tree peak MiB."""
    cmd = [sys.executable, "-m", f"stages.{module}", *args]
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    pipe = subprocess.PIPE
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=pipe, stderr=pipe, text=True)
    with TreePeak(proc.pid) as peak:
        out, err = proc.communicate()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = (err or out).strip().splitlines()[-1:] or ["no output"]
        raise SystemExit(f"{module} failed ({proc.returncode}): {tail[0]}")
    return {"wall_s": wall, "peak_tree_mib": peak.mib}


def params_for(
    work: Path, images: Path, captions: Path, size: int, loader: str | None = None
) -> Path:
    """The repository's params with the fixture's paths, ``size``, one epoch
    (and ``coco.train.loader`` when given)."""
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["coco_data"] = {"images": str(images), "captions": str(captions)}
    p["size"] = size
    p["coco"]["train"]["epochs"] = 1
    if loader is not None:
        p["coco"]["train"]["loader"] = loader
    path = work / f"params-{size}.yaml"
    path.write_text(yaml.safe_dump(p, sort_keys=False))
    return path


def row(stage: str, n: int, size: int | None, items: int, r: dict) -> dict:
    """One table row (printed as it comes)."""
    out = {"stage": stage, "n": n, "size": size, "items": items} | r
    out["items_per_s"] = items / r["wall_s"]
    print(json.dumps(out), file=sys.stderr, flush=True)
    return out


def filter_and_embed(
    n: int, work: Path, images: Path, captions: Path, p: Path
) -> list[dict]:
    """coco_filter and coco_embed on the N-image fixture (rows of both)."""
    d = work / "data"
    r = run_stage(
        "coco_filter",
        opts(
            captions=captions,
            images=images,
            out=d / "manifest.parquet",
            metrics=work / "filter.json",
            params=p,
        ),
        ROOT,
    )
    counts = json.loads((work / "filter.json").read_text())
    rows = [row("coco_filter", n, None, counts["captions_in_file"], r)]
    r = run_stage(
        "coco_embed",
        opts(
            manifest=d / "manifest.parquet",
            images=images,
            text_out=d / "text.parquet",
            image_out=d / "image.parquet",
            metrics=work / "embed.json",
            params=p,
        ),
        ROOT,
    )
    return [*rows, row("coco_embed", n, None, counts["kept"], r)]


def bench_n(
    n: int,
    sizes: list[int],
    work_root: Path,
    *,
    reuse: bool = False,
    loader: str | None = None,
    stages: tuple[str, ...] = STAGES,
) -> list[dict]:
    """Filter, embed, then per size shard, train and evaluate, on the N-image
    fixture. ``reuse``: keep this N's filter and embed outputs from an earlier
    run (they depend on neither size nor loader) and time only the rest.
    ``stages``: which of shard, train, evaluate run (the others' outputs from
    an earlier run are used)."""
    fixture = build(n, OUT, os.cpu_count() or 1)
    images, captions = fixture / "images", fixture / "captions.json"
    work = work_root / f"n{n}"
    work.mkdir(parents=True, exist_ok=True)
    d = work / "data"
    rows: list[dict] = []
    outputs = [d / "manifest.parquet", d / "text.parquet", d / "image.parquet"]
    if reuse and all(f.is_file() for f in outputs):
        print(f"n={n}: filter and embed outputs reused", file=sys.stderr)
    else:
        p = params_for(work, images, captions, sizes[0], loader)
        rows += filter_and_embed(n, work, images, captions, p)
    counts = json.loads((work / "filter.json").read_text())

    def add(stage: str, size: int | None, items: int, r: dict) -> None:
        rows.append(row(stage, n, size, items, r))

    for size in sizes:
        p = params_for(work, images, captions, size, loader)
        shards = d / f"shards{size}"
        model = d / f"model{size}.safetensors"
        before = {"train": shards, "evaluate": model}  # made by an earlier stage
        for stage, path in before.items():
            if stage in stages and not path.exists():
                raise SystemExit(f"{path} missing: add its stage to --stages")
        if "shard" in stages:
            r = run_stage(
                "coco_shard",
                opts(
                    manifest=d / "manifest.parquet",
                    images=images,
                    out=shards,
                    metrics=work / "shard.json",
                    params=p,
                ),
                ROOT,
            )
            add("coco_shard", size, counts["kept"], r)
        if "train" in stages:
            r = run_stage(
                "coco_train",
                opts(
                    shards=shards,
                    text_emb=d / "text.parquet",
                    image_emb=d / "image.parquet",
                    model_out=model,
                    history=work / f"history{size}.json",
                    state=d / f"resume{size}.pt",
                    params=p,
                ),
                ROOT,
            )
            hist = json.loads((work / f"history{size}.json").read_text())
            add(f"coco_train (1 epoch, {loader or 'auto'})", size, counts["train"], r)
            rows[-1]["kl_epoch1"] = hist[0]["kl"]
        if "evaluate" not in stages:
            continue
        fid = opts(fid_weights=FID_WEIGHTS) if FID_WEIGHTS.is_file() else []
        r = run_stage(
            "coco_evaluate",
            [
                *opts(
                    shards=shards,
                    text_emb=d / "text.parquet",
                    image_emb=d / "image.parquet",
                    model=model,
                    metrics=work / f"eval{size}.json",
                    recon_grid=work / f"recon{size}.png",
                    gen_grid=work / f"gen{size}.png",
                    params=p,
                ),
                *fid,
            ],
            ROOT,
        )
        add("coco_evaluate", size, counts["val"], r)
    return rows


def bench_filter(k: int, work_root: Path) -> dict:
    captions = captions_only(k, OUT)
    work = work_root / f"filter{k}"
    work.mkdir(parents=True, exist_ok=True)
    p = params_for(work, work, captions, 64)
    r = run_stage(
        "coco_filter",
        opts(
            captions=captions,
            out=work / "manifest.parquet",
            metrics=work / "filter.json",
            params=p,
        ),
        ROOT,
    )
    counts = json.loads((work / "filter.json").read_text())
    out = row("coco_filter (captions only)", k, None, counts["captions_in_file"], r)
    return out | {"kept": counts["kept"]}


def table(rows: list[dict]) -> str:
    head = (
        f"{platform.machine()}, {os.cpu_count()} logical CPUs, "
        f"{time.strftime('%Y-%m-%d')}; one epoch of training; FID "
        f"{'on' if FID_WEIGHTS.is_file() else 'off (no weights)'} in evaluate.\n\n"
        "| stage | N images | size | items | wall s | items/s | peak RSS MiB "
        "(process tree) |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n"
    )
    lines = [
        f"| {r['stage']} | {r['n']} | {r['size'] or '—'} | {r['items']} "
        f"| {r['wall_s']:.1f} | {r['items_per_s']:.1f} | {r['peak_tree_mib']:.0f} |"
        for r in rows
    ]
    return head + "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.scale",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--n", type=int, nargs="+", default=[1000])
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--filter-k", type=int, nargs="*", default=[118287])
    ap.add_argument("--work", type=Path, default=OUT / "work")
    ap.add_argument(
        "--reuse",
        action="store_true",
        help="keep each N's filter and embed outputs from an earlier run",
    )
    ap.add_argument(
        "--loader", choices=["memory", "stream", "auto"], help="coco.train.loader"
    )
    ap.add_argument(
        "--stages",
        nargs="+",
        choices=STAGES,
        default=list(STAGES),
        help="per-size stages to run (the others' outputs from an earlier run)",
    )
    ap.add_argument("--out", type=Path, help="also write the table (markdown) here")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args()
    rows = [bench_filter(k, args.work) for k in args.filter_k]
    for n in args.n:
        rows += bench_n(
            n,
            args.sizes,
            args.work,
            reuse=args.reuse,
            loader=args.loader,
            stages=tuple(args.stages),
        )
    text = table(rows)
    print(text)
    if args.out:
        args.out.write_text(text)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "args": vars(args)
                    | {
                        "work": str(args.work),
                        "out": str(args.out),
                        "json": str(args.json),
                    },
                    "rows": rows,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
