"""Keep each DVC stage's code ``deps`` exact: the stage module and every project
source file it imports, transitively (a stage must re-run when code it executes
changes, and only then).

    python scripts/sync_deps.py          # rewrite dvc.yaml's code deps
    python scripts/sync_deps.py --check  # exit 1 naming what is missing or extra

``tests/repo/test_dvc_yaml.py`` runs the check. Data deps (anything outside
``cvae/`` and ``stages/``) are left as they are.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CODE_DIRS = ("cvae/", "stages/")


def module_file(root: Path, module: str) -> Path | None:
    """``a.b`` -> ``root/a/b.py`` or ``root/a/b/__init__.py`` when it exists."""
    p = root.joinpath(*module.split("."))
    for c in (p.with_suffix(".py"), p / "__init__.py"):
        if c.is_file():
            return c
    return None


def _imports(root: Path, file: Path) -> set[str]:
    """Module names ``file`` imports (absolute; relative ones resolved)."""
    pkg = file.relative_to(root).parent.parts
    out: set[str] = set()
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = list(pkg[: len(pkg) - (node.level - 1)])
                base = ".".join(parts + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    return out


def code_closure(root: Path, module: str) -> list[str]:
    """Sorted paths (relative to ``root``) of every local file ``module`` runs,
    packages' ``__init__.py`` included when they hold code."""
    seen: set[Path] = set()
    todo = [f for f in [module_file(root, module)] if f]
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        for name in _imports(root, f):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # a package's __init__ runs too
                g = module_file(root, ".".join(parts[:i]))
                if g is not None and g not in seen:
                    todo.append(g)
    return sorted(
        str(f.relative_to(root))
        for f in seen
        if not (f.name == "__init__.py" and not _has_code(f))
    )


def _has_code(file: Path) -> bool:
    """An ``__init__.py`` with any statement but its docstring (an import, or a
    value such as ``__version__`` that outputs record)."""
    body = ast.parse(file.read_text(encoding="utf-8")).body
    if (
        body
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
    ):
        body = body[1:]  # the docstring changes nothing run
    return bool(body)


def stage_module(cmd: str) -> str | None:
    """The ``python -m <module>`` a stage command runs."""
    m = re.search(r"python\S*\s+-m\s+([\w.]+)", cmd)
    return m.group(1) if m else None


def diff(root: Path = ROOT) -> dict[str, tuple[list[str], list[str]]]:
    """Stage name -> (code deps missing, code deps extra) in dvc.yaml."""
    from ruamel.yaml import YAML

    stages = YAML(typ="safe").load((root / "dvc.yaml").read_text())["stages"]
    out = {}
    for name, st in stages.items():
        module = stage_module(
            " ".join(st["cmd"]) if isinstance(st["cmd"], list) else st["cmd"]
        )
        if module is None:
            continue
        want = set(code_closure(root, module))
        have = {
            d
            for d in st.get("deps", [])
            if isinstance(d, str) and d.startswith(CODE_DIRS)
        }
        if want != have:
            out[name] = (sorted(want - have), sorted(have - want))
    return out


def sync(root: Path = ROOT) -> list[str]:
    """Rewrite the code deps of every stage in dvc.yaml (comments kept)."""
    from ruamel.yaml import YAML

    yaml = YAML()  # round trip
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    path = root / "dvc.yaml"
    doc = yaml.load(path.read_text())
    changed = []
    for name, st in doc["stages"].items():
        cmd = " ".join(st["cmd"]) if isinstance(st["cmd"], list) else st["cmd"]
        module = stage_module(cmd)
        if module is None:
            continue
        deps = st.setdefault("deps", [])
        data = [d for d in deps if not (isinstance(d, str) and d.startswith(CODE_DIRS))]
        new = code_closure(root, module) + list(data)
        if list(deps) != new:
            deps.clear()
            deps.extend(new)
            changed.append(name)
    with open(path, "w") as f:
        yaml.dump(doc, f)
    return changed


if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:
        bad = diff()
        for name, (missing, extra) in bad.items():
            print(f"{name}: missing {missing}, extra {extra}")
        sys.exit(1 if bad else 0)
    print("updated:", ", ".join(sync()) or "nothing")
