"""A terminal-sized comparison of named runs: the params that differ between
them, then each model's headline metrics, one row per run, the paper's numbers
beside them where it has some.

Takes the records of :func:`cvae.experiments.report.records` (the CLI runs
`dvc exp show --json`); never runs dvc or git.
"""

from __future__ import annotations

import math
from typing import Any

from cvae.core.errors import UsageError
from cvae.experiments.lineage import MISSING, changed_params, lookup
from cvae.experiments.report import PAPER_TABLE1, PAPER_TABLE2, stale
from cvae.models import FASHION_ARCHS

WIDTH = 118  # the widest line printed (a 120-column terminal)

# Each model: its metrics file, its info file, and the headline columns
# (heading, metrics key, digits).
FASHION_COLUMNS = (
    ("MSE", "mse", 4),
    ("SSIM", "ssim", 4),
    ("SSIM valid", "ssim_valid", 4),
    ("FID recon", "fid_recon", 2),
    ("FID gen", "fid_generate", 2),
    ("cond acc", "cond_accuracy", 3),
    ("clf acc", "classifier_test_accuracy", 3),
)
COCO_COLUMNS = (
    ("MSE", "mse", 2),
    ("SSIM", "ssim", 4),
    ("FID recon", "fid_recon", 2),
    ("FID gen", "fid_generate", 2),
    ("CLIP gen", "clip_score_generated", 2),
    ("CLIP real", "clip_score_real", 2),
)
MODELS = {
    **{
        f"fashion-{arch}": (
            f"metrics/fashion_{arch}.json",
            f"info/fashion_{arch}.json",
            FASHION_COLUMNS,
        )
        for arch in FASHION_ARCHS
    },
    "coco": ("metrics/coco.json", "info/coco.json", COCO_COLUMNS),
}


def select(recs: list[dict[str, Any]], names: list[str]) -> list[dict[str, Any]]:
    """The records ``names`` ask for, in that order: an experiment's name,
    ``workspace``, a branch, or a commit or experiment sha (4+ characters)."""
    chosen = []
    for name in names:
        found = [r for r in recs if _matches(r, name)]
        if not found:
            known = ", ".join(dict.fromkeys(_short(r) for r in recs))
            raise UsageError(
                f"no run named {name!r}: use an experiment name, workspace, a "
                f"branch or a sha of `dvc exp show` (here: {known})"
            )
        chosen.append(found[0])
    return chosen


def _matches(rec: dict[str, Any], name: str) -> bool:
    label = rec["name"]
    if name == label or name == _short(rec):
        return True
    if label.startswith("commit ") and label.endswith(f"({name})"):
        return True  # a branch
    return len(name) >= 4 and rec["rev"].startswith(name)


def _short(rec: dict[str, Any]) -> str:
    """How a run is named in the table: an experiment's name, ``workspace``,
    or a commit's 7-character sha."""
    label = rec["name"]
    return (
        label.removeprefix("commit ").split(" ")[0]
        if label.startswith("commit ")
        else label
    )


def _fmt(value: Any, digits: int) -> str:
    if value is None or value is MISSING:
        return "—"
    if isinstance(value, float) and math.isnan(value):
        return "—"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return f"{value:.{digits}f}"


def _value(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


def _rows_table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join(
        h.ljust(w) if i == 0 else h.rjust(w)
        for i, (h, w) in enumerate(zip(header, widths))
    )
    body = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths))
        )
        for r in rows
    ]
    return [line.rstrip(), *(b.rstrip() for b in body)]


def _paper(model: str, rec: dict[str, Any]) -> dict[str, float]:
    if model.startswith("fashion-"):
        return PAPER_TABLE1.get(model.removeprefix("fashion-"), {})
    m = rec["metrics"].get("metrics/coco.json") or {}
    cond = (rec["info"].get("info/coco.json") or {}).get("conditioning")
    cond = cond or lookup(rec["params"], "conditioning")
    return PAPER_TABLE2.get((m.get("size"), cond), {})


def model_section(model: str, recs: list[dict[str, Any]]) -> list[str]:
    """One model's headline metrics: one row per run holding them, the paper's
    row, and a note for each run whose outputs are not from its params."""
    metrics_path, info_path, columns = MODELS[model]
    held = [r for r in recs if (r["metrics"].get(metrics_path) or {}).get("mse")]
    if not held:
        return []
    header = ["run", *(c[0] for c in columns)]
    rows = []
    notes = []
    for rec in held:
        m = rec["metrics"][metrics_path]
        rows.append([_short(rec), *(_fmt(m.get(key), d) for _, key, d in columns)])
        why = stale(rec, info_path)
        if why.startswith("**stale**"):
            notes.append(
                f"  ! {_short(rec)}: outputs not from its params ("
                + why.removeprefix("**stale** ")
                + ")"
            )
    paper = _paper(model, held[0])
    if paper:
        rows.append(
            [
                "paper",
                *(
                    _fmt(paper.get(key), d) if key in ("mse", "ssim") else ""
                    for _, key, d in columns
                ),
            ]
        )
        notes.append(
            f"  paper FID {paper['fid']:.2f} (protocol not stated: not comparable)"
        )
    return [f"{model}:", *("  " + line for line in _rows_table(header, rows)), *notes]


def compare(recs: list[dict[str, Any]]) -> str:
    """The comparison of ``recs`` (two or more runs) as plain text."""
    names = [_short(r) for r in recs]
    lines = ["runs: " + ", ".join(names), ""]
    changed = changed_params([r["params"] for r in recs])
    if changed:
        lines.append("params that differ:")
        width = max(len(k) for k, _ in changed)
        for key, values in changed:
            cells = "  ".join(f"{n}={_value(v)}" for n, v in zip(names, values))
            lines.append(f"  {key.ljust(width)}  {cells}")
    else:
        lines.append("params: the same in every run")
    same, differ = [], []
    for model, (metrics_path, _, _) in MODELS.items():
        held = [r["metrics"].get(metrics_path) for r in recs]
        if not any(m and m.get("mse") is not None for m in held):
            continue
        (same if all(h == held[0] for h in held[1:]) else differ).append(model)
    for model in differ:
        lines += ["", *model_section(model, recs)]
    if same:
        lines += ["", "the same metrics in every run: " + ", ".join(same)]
    return "\n".join(_fit(line) for line in lines) + "\n"


def _fit(line: str) -> str:
    """A line cut to the terminal width (long param values are the only ones)."""
    return line if len(line) <= WIDTH else line[: WIDTH - 1] + "…"
