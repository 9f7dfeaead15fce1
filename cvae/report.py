"""Paper-style tables (Table 1 and 2) from `dvc exp show --json` output.

The library takes the parsed JSON (it never runs dvc); the CLI runs dvc. Every
experiment, the workspace and the baseline commit become records; rows with
identical params and metrics are shown once.
"""

from __future__ import annotations

import math
import re
from typing import Any

# The paper's numbers (Table 1: Fashion-MNIST test set; Table 2: COCO).
PAPER_TABLE1 = {
    "fc": {"mse": 12.1598, "ssim": 0.6398, "fid": 16.9910},
    "conv": {"mse": 11.1087, "ssim": 0.7627, "fid": 50.3034},
}
PAPER_TABLE2 = {
    (64, "add"): {"mse": 195.2407, "ssim": 0.4135, "fid": 274.2384},
    (64, "concat"): {"mse": 184.8410, "ssim": 0.4148, "fid": 272.1877},
    (128, "add"): {"mse": 628.7485, "ssim": 0.4725, "fid": 231.6987},
    (128, "concat"): {"mse": 615.0895, "ssim": 0.4615, "fid": 299.9901},
    (256, "add"): {"mse": 20313.7465, "ssim": 0.1746, "fid": 237.1675},
    (256, "concat"): {"mse": 3656.8606, "ssim": 0.4421, "fid": 243.7546},
}
START, END = "<!-- report:start -->", "<!-- report:end -->"


def _data(entry: dict[str, Any]) -> tuple[dict, dict]:
    """(params.yaml dict, {metrics file: dict}) of one exp-show revision."""
    data = entry.get("data") or {}
    params = ((data.get("params") or {}).get("params.yaml") or {}).get("data") or {}
    metrics = {
        path: m["data"]
        for path, m in (data.get("metrics") or {}).items()
        if isinstance(m, dict) and isinstance(m.get("data"), dict)
    }
    return params, metrics


def _name(entry: dict[str, Any]) -> str:
    rev = entry.get("rev", "")
    return entry.get("name") or (rev if rev == "workspace" else rev[:7])


def records(exp_show: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Flatten `dvc exp show --json` into {name, params, metrics} records."""
    out = []
    for entry in exp_show:
        params, metrics = _data(entry)
        out.append(
            {
                "name": _name(entry),
                "params": params,
                "metrics": metrics,
            }
        )
        for exp in entry.get("experiments") or []:
            for rev in exp.get("revs") or []:
                params, metrics = _data(rev)
                out.append(
                    {
                        "name": _name(rev),
                        "params": params,
                        "metrics": metrics,
                    }
                )
    return out


def _param(rec: dict[str, Any], dotted: str) -> Any:
    """A params.yaml value of a record (None when absent)."""
    node: Any = rec["params"]
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _distinct(rows: list[list[str]]) -> list[list[str]]:
    """Rows whose cells (the experiment name aside) were not shown already."""
    seen: set[tuple[str, ...]] = set()
    out = []
    for row in rows:
        if tuple(row[1:]) not in seen:
            seen.add(tuple(row[1:]))
            out.append(row)
    return out


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def table1(recs: list[dict[str, Any]]) -> str:
    """Fashion-MNIST (paper Table 1): one row per distinct arch result."""
    rows = []
    for rec in recs:
        for arch in ("fc", "conv"):
            m = rec["metrics"].get(f"metrics/fashion_{arch}.json")
            if not m or "mse" not in m:
                continue
            paper = PAPER_TABLE1[arch]
            rows.append(
                [
                    rec["name"],
                    arch,
                    _fmt(
                        _param(rec, f"fashion.model.{arch}.conditioning")
                        or m.get("conditioning")  # metrics before numbers-only
                    ),
                    _fmt(m.get("epochs")),
                    _fmt(m["mse"]),
                    _fmt(paper["mse"]),
                    _fmt(m["ssim"]),
                    _fmt(m.get("ssim_valid")),
                    _fmt(paper["ssim"]),
                    _fmt(m.get("fid_recon", m.get("fid"))),
                    _fmt(m.get("fid_generate")),
                    _fmt(m.get("fid_floor")),
                    _fmt(paper["fid"]),
                    _fmt(m.get("cond_accuracy"), 3),
                ]
            )
    header = [
        "exp",
        "arch",
        "conditioning",
        "epochs",
        "MSE",
        "paper MSE",
        "SSIM (full map)",
        "SSIM (valid)",
        "paper SSIM",
        "FID recon",
        "FID gen",
        "FID floor",
        "paper FID",
        "cond. acc.",
    ]
    return _table(header, _distinct(rows))


def table2(recs: list[dict[str, Any]]) -> str:
    """COCO (paper Table 2): one row per distinct (size, conditioning, ...) result."""
    rows = []
    for rec in recs:
        m = rec["metrics"].get("metrics/coco.json")
        if not m or "mse" not in m:
            continue
        # Strings live in params (metrics files hold numbers only; older
        # experiments' metrics still carry them).
        cond = _param(rec, "conditioning") or m.get("conditioning")
        on = _param(rec, "condition_on") or m.get("condition_on")
        weights = _param(rec, "embed.pretrained") or m.get("clip_pretrained")
        random = weights in (None, "none") and m.get("clip_random_init", True)
        paper = PAPER_TABLE2.get((m.get("size"), cond), {})
        rows.append(
            [
                rec["name"],
                _fmt(m.get("size")),
                _fmt(cond),
                _fmt(on),
                _fmt(m.get("n")),
                _fmt(m["mse"], 2),
                _fmt(paper.get("mse"), 2),
                _fmt(m["ssim"]),
                _fmt(paper.get("ssim")),
                _fmt(m.get("fid_recon", m.get("fid")), 2),
                _fmt(m.get("fid_generate"), 2),
                _fmt(paper.get("fid"), 2),
                _fmt(m.get("clip_score_generated"), 2),
                _fmt(m.get("clip_score_real"), 2),
                "random" if random else _fmt(weights),
            ]
        )
    # By size (as a number), conditioning, condition_on, experiment.
    rows.sort(key=lambda r: (int(r[1]) if r[1].isdigit() else 0, r[2], r[3], r[0]))
    header = [
        "exp",
        "size",
        "conditioning",
        "condition on",
        "n val",
        "MSE",
        "paper MSE",
        "SSIM",
        "paper SSIM",
        "FID recon",
        "FID gen",
        "paper FID",
        "CLIP score gen",
        "CLIP score real",
        "CLIP weights",
    ]
    return _table(header, _distinct(rows))


def report(exp_show: list[dict[str, Any]]) -> str:
    """Both tables as markdown."""
    recs = records(exp_show)
    return (
        "**Table 1 — Fashion-MNIST (10k test set)**\n\n"
        + table1(recs)
        + "\n\n**Table 2 — COCO (held-out split)**\n\n"
        + table2(recs)
        + "\n"
    )


def splice(document: str, body: str) -> str:
    """Replace the text between the report markers of ``document`` by ``body``."""
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(document):
        raise ValueError(f"no {START} ... {END} markers in the document")
    return pattern.sub(lambda _: f"{START}\n{body}\n{END}", document)
