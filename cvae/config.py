"""Config dataclasses from params.yaml sections, one key per field."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from cvae.errors import CVAEError

T = TypeVar("T")


def from_params(cls: type[T], params: dict[str, Any], what: str) -> T:
    """``cls(**params)``, refusing keys that are not fields of ``cls``.

    ``what`` names the params section in the error (e.g. "fc model").
    """
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - names)
    if unknown:
        raise CVAEError(
            f"unknown {what} param(s) {unknown}: valid keys are {sorted(names)}"
        )
    return cls(**params)
