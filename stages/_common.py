"""Shared glue for stages: params loading and one-line error reporting."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from cvae.errors import CVAEError


def load_params(section: str | None = None, path: str | Path = "params.yaml") -> Any:
    """Return ``params.yaml`` (or one top-level section of it)."""
    path = Path(path)
    if not path.exists():
        raise CVAEError(f"{path} not found: run the stage from the project root")
    try:
        with open(path) as f:
            params = yaml.safe_load(f) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        where = getattr(e, "problem_mark", None)
        at = f" (line {where.line + 1})" if where is not None else ""
        raise CVAEError(f"{path} is not valid YAML{at}: fix it") from None
    if not isinstance(params, dict):
        raise CVAEError(f"{path} is not a YAML mapping of sections: fix it")
    if section is None:
        return params
    if section not in params:
        raise CVAEError(f"{path} has no '{section}' section: add it (see README)")
    return params[section]


def require(params: dict, keys: tuple[str, ...], path: str | Path) -> None:
    """Fail with one line naming the first missing top-level key."""
    for key in keys:
        if key not in params:
            raise CVAEError(f"{path} has no '{key}' entry: add it (see README)")


def stage_main(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a stage ``main``: a CVAEError becomes one line on stderr and exit 2;
    a torchrun process group the stage joined (``cvae.distributed``) is left."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CVAEError as e:
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        finally:
            if "torch.distributed" in sys.modules:  # a group needs it imported
                from cvae import distributed

                distributed.teardown(distributed.info_from_env())

    return wrapper
