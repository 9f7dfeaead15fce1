"""Reading params.yaml (YAML 1.2, as DVC reads it), validating it against the
schema, and one-line errors that name the key, the value and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cvae.params.schema import Params, ParamsError, did_you_mean


# ---------------------------------------------------------------- loading ----
def read_yaml(path: Path) -> Any:
    """``path`` parsed with YAML 1.2 (ruamel.yaml, as DVC reads params)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    if not path.is_file():
        raise ParamsError(
            f"{path} not found: run from the project root or pass --params"
        )
    try:
        return YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
    except YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        what = str(getattr(e, "problem", None) or type(e).__name__)
        raise ParamsError(f"{path} is not valid YAML{at} ({what}): fix it") from None
    except UnicodeDecodeError:
        raise ParamsError(f"{path} is not UTF-8 text: fix it") from None


def validate(data: Any, source: str = "params.yaml") -> Params:
    """The typed :class:`Params` of a parsed params mapping, or one-line error."""
    if not isinstance(data, dict):
        raise ParamsError(f"{source} is not a mapping of sections: fix it")
    try:
        return Params.model_validate(data)
    except ValidationError as e:
        errors = e.errors(include_url=False)
        first = describe(errors[0], data)
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ParamsError(f"{source}: {first}{more}") from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate the whole params file (every stage, the CLI, benchmarks)."""
    path = Path(path)
    return validate(read_yaml(path), str(path))


def describe(error: dict[str, Any], data: Any) -> str:
    """One pydantic error as ``key = value: what is allowed``."""
    loc = [str(p) for p in error["loc"]]  # list indices become digits
    kind, msg = error["type"], error["msg"]
    if kind == "extra_forbidden":
        known = _known_keys(loc[:-1])
        hint = did_you_mean(loc[-1], known, prefix=_dotted(loc[:-1]))
        return f"unknown key {_dotted(loc)}{hint or ''}" + (
            "" if hint else f" (known here: {', '.join(known)})"
        )
    if kind == "missing":
        return (
            f"{_dotted(loc)} is missing: add it "
            "(the repository's params.yaml has every key)"
        )
    if kind == "value_error" or kind == "assertion_error":
        msg = msg.removeprefix("Value error, ")
    where = _dotted(loc) or "params"
    value = _value_at(data, error["loc"])
    if kind == "value_error" and isinstance(value, dict):  # a cross-field rule
        return f"{where}: {msg}"
    return f"{where} = {value!r}: {_allowed(kind, msg, error)}"


def _allowed(kind: str, msg: str, error: dict[str, Any]) -> str:
    """pydantic's message, with 'use ...' phrasing for type errors."""
    got = type(error.get("input")).__name__
    if kind in ("int_type", "int_from_float"):
        return f"an integer is required, not {got} (no quotes, no decimal point)"
    if kind == "float_type":
        return f"a number is required, not {got} (no quotes)"
    if kind == "bool_type":
        return f"true or false is required, not {got} (no quotes)"
    if kind in ("string_type", "list_type", "dict_type", "model_type"):
        need = {
            "string_type": "a string",
            "list_type": "a list",
            "dict_type": "a mapping",
            "model_type": "a section (mapping)",
        }[kind]
        return f"{need} is required, not {got}"
    return msg[0].lower() + msg[1:] if msg else kind


def _value_at(data: Any, loc: tuple) -> Any:
    """The value at ``loc``; for a mapping key's own error, the key."""
    for prev, part in zip((None, *loc), loc, strict=False):
        if part == "[key]":
            return prev
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _dotted(loc: list[str]) -> str:
    """``['fc', 'hidden_dims', '0']`` -> ``fc.hidden_dims[0]``."""
    parts = {"[key]": " key"}  # a mapping key's own error: "filter.keywords.x key"
    return "".join(
        parts.get(p) or (f"[{p}]" if p.isdigit() else f".{_shown(p)}") for p in loc
    ).lstrip(".")


def _shown(key: str) -> str:
    """A key as written, or quoted when it is empty, padded or unprintable."""
    plain = key and key.isprintable() and key == key.strip()
    return key if plain else repr(key)


def _known_keys(loc: list[str]) -> list[str]:
    """Field names of the section at ``loc`` (walking the schema's classes)."""
    cls: Any = Params
    for part in loc:
        field = getattr(cls, "model_fields", {}).get(part)
        if field is None:
            return []
        cls = field.annotation
    return list(getattr(cls, "model_fields", {}))
