"""Architecture configs (dataclasses, no defaults) from complete dicts: a params
section plus what the data decides, or a checkpoint's stored config."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from cvae.core.errors import CVAEError

T = TypeVar("T")


def from_params(cls: type[T], params: dict[str, Any], what: str) -> T:
    """``cls(**params)``, refusing keys that are not fields of ``cls`` and
    missing ones (no field has a default: params.yaml holds the values).

    ``what`` names the params section in the error (e.g. "fc model").
    """
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - names)
    if unknown:
        raise CVAEError(
            f"unknown {what} param(s) {unknown}: valid keys are {sorted(names)}"
        )
    missing = sorted(names - set(params))
    if missing:
        raise CVAEError(f"{what} param(s) {missing} missing: add them")
    return cls(**params)
