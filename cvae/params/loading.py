"""Reading params.yaml (YAML 1.2, as DVC reads it), validating it against the
schema, and one-line errors that name the key, the value and the fix."""

from __future__ import annotations

import difflib
import types
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

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
        errors = _paired(_unions(e.errors(include_url=False)))
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
    if kind == "renamed":  # an unknown key beside the missing key it resembles
        return f"unknown key {_dotted(loc)}: did you mean {error['msg']}?"
    if kind == "union":
        value = _value_at(data, error["loc"])
        return f"{_dotted(loc)} = {value!r}: use {_words(error['ctx']['union'])}"
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


# ------------------------------------------------ unions and renamed keys ----
def _unions(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The errors with each failed union field's per-member errors (one per
    member, under loc + the member's tag, e.g. ``literal['auto']``) folded into
    one ``union`` error at the field, which names every member."""
    out: list[dict[str, Any]] = []
    seen: set[tuple] = set()
    for error in errors:
        found = _union_at(error["loc"])
        if found is None:
            out.append(error)
            continue
        cut, union = found
        loc = tuple(error["loc"][:cut])
        if loc not in seen:
            seen.add(loc)
            ctx = {"union": union}
            out.append({"type": "union", "loc": loc, "msg": "", "ctx": ctx})
    return out


def _union_at(loc: tuple) -> tuple[int, Any] | None:
    """(how many parts of ``loc`` name the field, its type) when ``loc`` runs
    into one member of a union field (a union of two or more non-null types)."""
    ann: Any = Params
    for i, part in enumerate(loc):
        ann = _plain(ann)
        if len(_members(ann)) > 1:
            return i, ann
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            field = ann.model_fields.get(part)
            ann = field.annotation if field is not None else None
        elif get_origin(ann) is list and isinstance(part, int):
            ann = get_args(ann)[0]
        elif get_origin(ann) is dict:
            ann = get_args(ann)[0 if part == "[key]" else 1]
        else:
            return None
    return None


def _members(ann: Any) -> list[Any]:
    """The non-null members of a union type (none for any other type)."""
    if get_origin(ann) not in (Union, types.UnionType):
        return []
    return [a for a in get_args(ann) if a is not type(None)]


def _plain(ann: Any) -> Any:
    """``ann`` without Annotated metadata and without a ``| None``."""
    while True:
        if get_origin(ann) is Annotated:
            ann = get_args(ann)[0]
        elif len(members := _members(ann)) == 1:
            ann = members[0]
        else:
            return ann


_TYPE_WORDS = {
    int: "an integer",
    float: "a number",
    str: "a string",
    bool: "true or false",
    type(None): "null",
}
_BOUNDS = (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))


def _words(ann: Any) -> str:
    """What a type allows, in words: ``auto or an integer >= 0``."""
    origin = get_origin(ann)
    if origin in (Union, types.UnionType, Literal):
        parts = [str(a) if origin is Literal else _words(a) for a in get_args(ann)]
        return " or ".join([", ".join(parts[:-1]), parts[-1]] if parts[1:] else parts)
    if origin is Annotated:
        base, *meta = get_args(ann)
        bounds = [
            f"{sign} {getattr(c, attr)}"
            for m in meta
            for c in getattr(m, "metadata", [m])
            for attr, sign in _BOUNDS
            if getattr(c, attr, None) is not None
        ]
        return " ".join([_words(base), " and ".join(bounds)]).rstrip()
    return _TYPE_WORDS.get(ann, getattr(ann, "__name__", str(ann)))


def _paired(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A missing key and an unknown key beside it that resembles it (a rename,
    a typo) become one ``renamed`` error: the unknown key and the key it
    resembles, in the missing key's place."""
    missing = {
        tuple(e["loc"]): i for i, e in enumerate(errors) if e["type"] == "missing"
    }
    renamed: dict[int, dict[str, Any]] = {}  # missing error's index -> its rename
    for j, error in enumerate(errors):
        if error["type"] != "extra_forbidden":
            continue
        section, key = tuple(error["loc"][:-1]), str(error["loc"][-1])
        here = [m[-1] for m in missing if m[:-1] == section]
        for close in difflib.get_close_matches(key, here, n=1, cutoff=0.6):
            i = missing[(*section, close)]
            if i not in renamed:
                target = _dotted([str(p) for p in (*section, close)])
                renamed[i] = error | {"type": "renamed", "msg": target, "at": j}
    used = {r["at"] for r in renamed.values()}
    return [renamed.get(i, error) for i, error in enumerate(errors) if i not in used]
