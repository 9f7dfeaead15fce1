"""Table 1 over training seeds: runs of the same settings that differ only in
``fashion.train.seed``, as mean, standard deviation and range per metric beside
the paper, and on how many seeds each metric beats the paper's.

Runs are the records of :func:`cvae.experiments.report.records`; a run's
settings are the params its evaluation recorded (its info file), so the
workspace and the commit holding the same outputs count once.
"""

from __future__ import annotations

import statistics
from typing import Any

from cvae.experiments import markdown
from cvae.experiments.lineage import NOT_OUTPUT_SETTINGS
from cvae.models import FASHION_ARCHS

SEED_KEY = "fashion.train.seed"
# (metrics key, column, paper key or None, True when higher is better)
METRICS = (
    ("mse", "MSE", "mse", False),
    ("ssim", "SSIM (full map)", "ssim", True),
    ("ssim_valid", "SSIM (valid)", "ssim", True),
    ("cond_accuracy", "cond. acc.", None, True),
)


def seed_runs(
    recs: list[dict[str, Any]], arch: str
) -> list[tuple[dict[str, Any], dict[int, dict[str, Any]]]]:
    """[(settings without the seed, {seed: metrics})] for ``arch``, in the order
    first seen; a seed's first record wins (the same outputs count once)."""
    groups: list[tuple[dict[str, Any], dict[int, dict[str, Any]]]] = []
    for rec in recs:
        m = rec["metrics"].get(f"metrics/fashion_{arch}.json")
        info = rec["info"].get(f"info/fashion_{arch}.json") or {}
        used = info.get("params")
        if (
            not m
            or "mse" not in m
            or not isinstance(used, dict)
            or SEED_KEY not in used
        ):
            continue
        settings = {
            k: v
            for k, v in used.items()
            if k != SEED_KEY and k not in NOT_OUTPUT_SETTINGS
        }
        for known, seeds in groups:
            if known == settings:
                seeds.setdefault(used[SEED_KEY], m)
                break
        else:
            groups.append((settings, {used[SEED_KEY]: m}))
    return groups


def _cell(values: list[float]) -> str:
    mean, sd = statistics.fmean(values), statistics.stdev(values)
    return f"{mean:.4f} ± {sd:.4f} ({min(values):.4f}–{max(values):.4f})"


def _beats(values: list[float], paper: float, higher: bool) -> str:
    wins = sum((v > paper) if higher else (v < paper) for v in values)
    return f"{wins}/{len(values)}"


def spread_table(recs: list[dict[str, Any]], paper: dict[str, dict[str, float]]) -> str:
    """Markdown: one row per (arch, settings) trained with two or more seeds;
    "" when there is none."""
    rows = []
    for arch in FASHION_ARCHS:
        for _, seeds in seed_runs(recs, arch):
            if len(seeds) < 2:
                continue
            ref = paper.get(arch, {})
            cells, wins = [], []
            for key, column, paper_key, higher in METRICS:
                values = [float(m[key]) for m in seeds.values() if key in m]
                cells.append(_cell(values) if len(values) >= 2 else "—")
                if paper_key in ref and len(values) >= 2:
                    wins.append(f"{column} {_beats(values, ref[paper_key], higher)}")
            rows.append(
                [
                    arch,
                    ", ".join(str(s) for s in sorted(seeds)),
                    *cells,
                    f"{ref['mse']:.4f} / {ref['ssim']:.4f}" if ref else "—",
                    "; ".join(wins) or "—",
                ]
            )
    if not rows:
        return ""
    header = ["arch", "seeds", *(c for _, c, _, _ in METRICS)]
    header += ["paper MSE / SSIM", "seeds beating the paper"]
    return markdown.table(header, rows)
