"""Which params an output came from, and whether a revision's params still match.

An evaluation stage records ``flat_params(params, LINEAGE)`` (its own params and
its ancestors' in dvc.yaml) in its info file. A report then compares that record
with the params.yaml of the revision holding the output: a difference means the
output was not produced from that revision's params (a stage left out of a
targeted `dvc exp run`, outputs committed by hand), so its numbers are stale.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

MISSING = "(absent)"  # how a key one side lacks is shown

# Settings that change how fast or where work runs, never the bytes of an output
# (tested: the same bytes for any worker count; the budget only picks a loader,
# and the loader that ran is part of the training run's fingerprint). A stage
# re-run for one of them writes the same bytes, so DVC does not re-run what
# follows, and its recorded value must not make those outputs look stale.
NOT_OUTPUT_SETTINGS = frozenset(
    {
        "shard.workers",
        "embed.num_workers",
        "coco.train.num_workers",
        "coco.train.memory_budget_mib",
    }
)


def flat_params(params: BaseModel, keys: Iterable[str]) -> dict[str, Any]:
    """{dotted leaf key: value} of the params under each dotted ``key`` (a
    section or a leaf), sorted, with values as in params.yaml (lists, not tuples)."""
    data = params.model_dump(mode="json")
    out: dict[str, Any] = {}
    for key in keys:
        node: Any = data
        for part in key.split("."):
            node = node[part]  # KeyError: a LINEAGE entry the schema lacks (a bug)
        _flatten(node, key, out)
    return {k: v for k, v in sorted(out.items()) if k not in NOT_OUTPUT_SETTINGS}


def _flatten(node: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            _flatten(v, f"{prefix}.{k}", out)
    else:
        out[prefix] = node


def lookup(params: dict[str, Any], dotted: str) -> Any:
    """The value at ``dotted`` in a nested params mapping, or MISSING."""
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return MISSING
        node = node[part]
    return node


def differences(
    recorded: dict[str, Any], params: dict[str, Any]
) -> dict[str, tuple[Any, Any]]:
    """{key: (value in params, value the output came from)} where they differ.

    Numbers compare by value (YAML ``1e-3`` and ``0.001`` are one value; an int
    and the same float are one value), everything else by equality.
    """
    out = {}
    for key, was in recorded.items():
        if key in NOT_OUTPUT_SETTINGS:  # recorded by older evaluations
            continue
        now = lookup(params, key)
        if not same_value(now, was):
            out[key] = (now, was)
    return out


def same_value(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    return a == b


def _flat(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat(value, f"{dotted}."))
        else:
            out[dotted] = value
    return out


def changed_params(
    params: list[dict[str, Any]],
) -> list[tuple[str, list[Any]]]:
    """(dotted key, the value in each params mapping) for every key whose value
    is not the same in all of them; speed-only settings left out."""
    flats = [_flat(p) for p in params]
    keys = sorted(set().union(*flats) - NOT_OUTPUT_SETTINGS)
    out = []
    for key in keys:
        values = [f.get(key, MISSING) for f in flats]
        if not all(same_value(values[0], v) for v in values[1:]):
            out.append((key, values))
    return out
