"""Generation FID on the 10,000-image protocol, over several generation seeds.

    python -m benchmarks.fashion_fid10k --rows vaegan-long --seeds 0 1 2

The protocol of docs/results.md (Dai & Wipf's Table 1 and the paper's):
10,000 generations (1,000 per class) against the 10,000 test images, Inception-v3
pool features, the evaluation's own FID code. A row is one of
``benchmarks.fashion_ablation``'s (a pipeline model, or a variant it trains and
caches). Inception runs at about 9 images/s on 2 CPU cores, so each seed costs
about 18 minutes there: the test set's statistics are cached once under
``benchmarks/.cache/``, and each (model file, seed) result as soon as it is
known, so a stopped run loses at most one seed. Writes ``fashion_fid10k.json``
and ``fashion_fid10k.md`` beside this file: per row the FID of each seed, their
mean and standard deviation.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from benchmarks.fashion_ablation import (
    CACHE,
    FID_WEIGHTS,
    ROWS,
    real_stats,
    row_model,
    sha256,
)
from benchmarks.records import merge_and_write
from cvae.core.files import write_json
from cvae.data.prompts import CLASS_NAMES
from cvae.evaluation.fid import FID
from cvae.evaluation.scores import fid_to_reference, generate_per_condition
from cvae.experiments import markdown

N = 10_000  # the protocol: generations, and real test images


def seed_fid(model: torch.nn.Module, path: Path, sampler: str, seed: int, fid: FID):
    """Generation FID of a row's model at one generation seed (cached by its file,
    sampler and temperature)."""
    t = getattr(model.config, "temperature", None)
    cache = CACHE / f"fid10k-{sha256(path)[:16]}-{sampler}-t{t}-s{seed}.json"
    if cache.exists():
        return json.loads(cache.read_text())["fid"]
    conds = [torch.tensor(k) for k in range(len(CLASS_NAMES))]
    gen = generate_per_condition(model, conds, N // len(conds), seed=seed)
    value = fid_to_reference(fid, real_stats(fid, N), gen)
    write_json(cache, {"fid": value, "model_sha256": sha256(path), "seed": seed})
    return value


def table(results: dict[str, dict]) -> str:
    rows = [
        [
            ROWS[key].name,
            ", ".join(f"{v:.2f}" for v in r["fid_by_seed"].values()),
            f"{r['fid_mean']:.2f}",
            f"{r['fid_std']:.2f}" if r["fid_std"] is not None else "—",
        ]
        for key, r in results.items()
    ]
    header = ["row", "FID per generation seed", "mean ↓", "std"]
    return markdown.table(header, rows) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", nargs="+", choices=list(ROWS), required=True)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = ap.parse_args()
    torch.set_flush_denormal(True)
    torch.set_num_threads(args.threads)
    fid = FID(FID_WEIGHTS, batch_size=100)
    results = {}
    for key in args.rows:
        model, path = row_model(ROWS[key])
        by_seed = {}
        for seed in args.seeds:
            t0 = time.perf_counter()
            by_seed[str(seed)] = seed_fid(model, path, ROWS[key].sampler, seed, fid)
            print(
                f"{key} seed {seed}: FID {by_seed[str(seed)]:.3f} "
                f"({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
        values = list(by_seed.values())
        results[key] = {
            "fid_by_seed": by_seed,
            "fid_mean": statistics.fmean(values),
            "fid_std": statistics.stdev(values) if len(values) > 1 else None,
            "n": N,
        }
    ordered = merge_and_write("fashion_fid10k", results, ROWS, table)
    print(table(ordered))


if __name__ == "__main__":
    main()
