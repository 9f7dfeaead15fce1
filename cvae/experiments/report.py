"""Paper-style tables (Table 1 and 2) from `dvc exp show --json` output.

The library takes the parsed JSON and the revisions' info files (it never runs
dvc or git); the CLI runs them. Every experiment, the workspace and every commit
become records; results equal to the precision shown are one row, with all
their names; runs that differ only in the training seed get a spread table; a row
whose outputs did not come from its revision's params is flagged stale.
"""

from __future__ import annotations

import math
import re
from typing import Any

from cvae.experiments import markdown
from cvae.experiments.lineage import MISSING, changed_params, differences, lookup
from cvae.experiments.spread import spread_table
from cvae.models import FASHION_ARCHS

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


INFO_FILES = (*(f"info/fashion_{a}.json" for a in FASHION_ARCHS), "info/coco.json")


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


def _label(entry: dict[str, Any], experiment: bool) -> str:
    """How a row names its revision: the workspace, ``commit abc1234 (main)``,
    or the experiment's name (``exp abc1234`` when it has none)."""
    rev = entry.get("rev", "")
    if rev == "workspace":
        return "workspace"
    if experiment:
        return entry.get("name") or f"exp {rev[:7]}"
    branch = entry.get("name")
    return f"commit {rev[:7]}" + (f" ({branch})" if branch else "")


def records(
    exp_show: list[dict[str, Any]],
    infos: dict[str, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Flatten `dvc exp show --json` into {name, rev, params, metrics, info}
    records; ``infos`` maps a revision to its info files ({path: dict})."""
    infos = infos or {}
    out = []

    def add(entry: dict[str, Any], experiment: bool) -> None:
        params, metrics = _data(entry)
        rev = entry.get("rev", "")
        out.append(
            {
                "name": _label(entry, experiment),
                "rev": rev,
                "params": params,
                "metrics": metrics,
                "info": infos.get(rev, {}),
            }
        )

    for entry in exp_show:
        add(entry, experiment=False)
        for exp in entry.get("experiments") or []:
            for rev in exp.get("revs") or []:
                add(rev, experiment=True)
    return out


def _param(rec: dict[str, Any], dotted: str) -> Any:
    """A params.yaml value of a record (None when absent)."""
    value = lookup(rec["params"], dotted)
    return None if value is MISSING else value


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, list):
        return "+".join(str(v) for v in value) or "—"
    return str(value)


def stale(rec: dict[str, Any], info_path: str) -> str:
    """Whether a row's outputs came from its revision's params.

    "no"; "?" when the outputs recorded no params (made before this check);
    else the differing keys, ``key: params X, outputs Y``.
    """
    info = rec["info"].get(info_path)
    if not info or not isinstance(info.get("params"), dict):
        return "?"
    diff = differences(info["params"], rec["params"])
    if not diff:
        return "no"
    shown = [f"{k}: params {_fmt(a)}, outputs {_fmt(b)}" for k, (a, b) in diff.items()]
    more = f" (+{len(shown) - 2} more)" if len(shown) > 2 else ""
    return "**stale** " + "; ".join(shown[:2]) + more


def _used(rec: dict[str, Any], info_path: str, dotted: str) -> Any:
    """A param as the outputs used it (their info record), else the revision's."""
    info = rec["info"].get(info_path) or {}
    recorded = info.get("params")
    if isinstance(recorded, dict) and dotted in recorded:
        return recorded[dotted]
    return _param(rec, dotted)


def _merged(rows: list[list[str]]) -> list[list[str]]:
    """One row per distinct result: rows whose cells (the name aside) are equal
    are shown once, with all their names, in the order first seen."""
    names: dict[tuple[str, ...], list[str]] = {}
    for row in rows:
        names.setdefault(tuple(row[1:]), []).append(row[0])
    return [[_names(n), *cells] for cells, n in names.items()]


def _names(labels: list[str]) -> str:
    """The workspace and experiments by name; commits as ``commit a`` up to 3,
    else ``N commits (first … last)`` (`dvc exp show -A` lists every commit)."""
    commits = [x.removeprefix("commit ") for x in labels if x.startswith("commit ")]
    others = [x for x in labels if not x.startswith("commit ")]
    if len(commits) > 3:
        others.append(f"{len(commits)} commits ({commits[0]} … {commits[-1]})")
    else:
        others += [f"commit {c}" for c in commits]
    return ", ".join(others)


def table1(recs: list[dict[str, Any]]) -> str:
    """Fashion-MNIST (paper Table 1): one row per distinct arch result."""
    rows = []
    for rec in recs:
        for arch in FASHION_ARCHS:
            m = rec["metrics"].get(f"metrics/fashion_{arch}.json")
            if not m or "mse" not in m:
                continue
            info_path = f"info/fashion_{arch}.json"
            info = rec["info"].get(info_path) or {}
            paper = PAPER_TABLE1.get(arch, {})  # "—" where the paper has none
            rows.append(
                [
                    rec["name"],
                    arch,
                    _fmt(
                        info.get("conditioning")  # what the outputs used
                        or _param(rec, f"fashion.model.{arch}.conditioning")
                        or m.get("conditioning")  # metrics before numbers-only
                    ),
                    _fmt(m.get("epochs")),
                    _fmt(m.get("n_train") or _fashion_train_size(rec)),
                    _fmt(m["mse"]),
                    _fmt(paper.get("mse")),
                    _fmt(m["ssim"]),
                    _fmt(m.get("ssim_valid")),
                    _fmt(paper.get("ssim")),
                    _fmt(m.get("fid_recon", m.get("fid")), 2),
                    _fmt(m.get("fid_generate"), 2),
                    _fmt(m.get("fid_floor"), 2),
                    _fmt(paper.get("fid"), 2),
                    _fmt(m.get("cond_accuracy"), 3),
                    _fmt(m.get("cond_classes_below_real")),
                    _fmt(m.get("classifier_test_accuracy"), 3),
                    stale(rec, info_path),
                ]
            )
    header = [
        "exp",
        "arch",
        "conditioning",
        "epochs",
        "n train",
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
        "classes below real",
        "classifier acc.",
        "stale",
    ]
    return markdown.table(header, _merged(rows))


def _fashion_train_size(rec: dict[str, Any]) -> Any:
    """Training-set size of records made before the evaluation reported it:
    the fashion_data stage's count."""
    return (rec["metrics"].get("metrics/fashion_data.json") or {}).get("train")


def _clip_weights(rec: dict[str, Any], m: dict[str, Any]) -> str:
    """The CLIP weights the outputs used: "random", or name and sha256 prefix."""
    info = rec["info"].get("info/coco.json") or {}
    random = info.get("clip_random_init", m.get("clip_random_init"))
    name = info.get("clip_pretrained") or m.get("clip_pretrained")
    if random is None and name is None:  # an old record: fall back to params
        name = _param(rec, "embed.pretrained")
        random = name in (None, "none")
    if random:
        return "random"
    sha = info.get("clip_sha256")
    return f"{name} ({sha[:12]})" if sha else f"{name} (sha256 unknown)"


def table2(recs: list[dict[str, Any]]) -> str:
    """COCO (paper Table 2): one row per distinct (size, conditioning, ...) result."""
    rows = []
    for rec in recs:
        m = rec["metrics"].get("metrics/coco.json")
        if not m or "mse" not in m:
            continue
        info_path = "info/coco.json"
        info = rec["info"].get(info_path) or {}
        # Strings live in info and params (metrics files hold numbers only;
        # older experiments' metrics still carry them).
        cond = info.get("conditioning") or _param(rec, "conditioning")
        cond = cond or m.get("conditioning")
        on = info.get("condition_on") or _param(rec, "condition_on")
        on = on or m.get("condition_on")
        paper = PAPER_TABLE2.get((m.get("size"), cond), {})
        rows.append(
            [
                rec["name"],
                _fmt(m.get("size")),
                _fmt(cond),
                _fmt(on),
                _fmt(_used(rec, info_path, "filter.subsets")),
                _fmt(m.get("epochs")),
                _fmt(m.get("n_train")),
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
                _clip_weights(rec, m),
                stale(rec, info_path),
            ]
        )
    # By size (as a number), conditioning, condition_on, experiment.
    rows.sort(key=lambda r: (int(r[1]) if r[1].isdigit() else 0, r[2], r[3]))
    header = [
        "exp",
        "size",
        "conditioning",
        "condition on",
        "subsets",
        "epochs",
        "n train",
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
        "stale",
    ]
    return markdown.table(header, _merged(rows))


# Settings a table shows in its own columns (the rest of a section's keys, when
# they differ between rows, are named under the table).
SHOWN = {
    "fashion": (
        "fashion.train.epochs",
        *(f"fashion.model.{a}.conditioning" for a in FASHION_ARCHS),
    ),
    "coco": ("size", "conditioning", "condition_on", "filter.subsets"),
}
COCO_KEYS = (
    "size",
    "conditioning",
    "condition_on",
    "coco_data",
    "filter",
    "shard",
    "embed",
    "coco.",
)


def unshown(recs: list[dict[str, Any]], table: str) -> str:
    """A line naming the settings that differ between a table's rows but have no
    column (a classifier trained for fewer epochs, another learning rate), so a
    difference in the numbers is not read as the effect of the columns alone."""
    metrics = "metrics/fashion_" if table == "fashion" else "metrics/coco.json"
    rows = [r for r in recs if any(k.startswith(metrics) for k in r["metrics"])]
    keys = ("fashion.",) if table == "fashion" else COCO_KEYS
    changed = [
        (k, v)
        for k, v in changed_params([r["params"] for r in rows])
        if k.startswith(keys) and k not in SHOWN[table]
    ]
    if not changed:
        return ""
    shown = "; ".join(
        f"{k} ({', '.join(dict.fromkeys(_fmt(x) for x in v))})" for k, v in changed
    )
    return (
        f"\n\nRows also differ in settings without a column: {shown} "
        "(`cvae compare A B` shows them run by run)."
    )


def report(
    exp_show: list[dict[str, Any]],
    infos: dict[str, dict[str, Any]] | None = None,
) -> str:
    """Both tables as markdown (``infos``: see :func:`records`)."""
    recs = records(exp_show, infos)
    seeds = spread_table(recs, PAPER_TABLE1)
    if seeds:
        seeds = (
            "\n\n**Table 1 over training seeds** (runs that differ only in "
            "`fashion.train.seed`: mean ± standard deviation (range))\n\n" + seeds
        )
    return (
        "**Table 1 — Fashion-MNIST (10k test set)**\n\n"
        + table1(recs)
        + unshown(recs, "fashion")
        + seeds
        + "\n\n**Table 2 — COCO (held-out split)**\n\n"
        + table2(recs)
        + unshown(recs, "coco")
        + "\n\n"
        + LEGEND
    )


LEGEND = (
    "Rows: `workspace`, `commit <sha> (<branch>)`, or an experiment's name; "
    "revisions share a row only when every number agrees to the precision "
    "shown (then the row names them all). *stale*: "
    "whether the outputs came from the revision's params (the evaluation "
    "records the params of its whole lineage): `no`, `?` (outputs made before "
    "this record existed), or the keys that differ. *classes below real*: "
    "classes whose generations the classifier recognises less often than their "
    "real test images. *classifier acc.*: test accuracy of the classifier that "
    "scored *cond. acc.*\n"
)


def splice(document: str, body: str) -> str:
    """Replace the text between the report markers of ``document`` by ``body``."""
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(document):
        raise ValueError(f"no {START} ... {END} markers in the document")
    return pattern.sub(lambda _: f"{START}\n{body}\n{END}", document)
