"""Files of git revisions for `cvae report`: the info files of every revision
`dvc exp show` lists (commits and experiments are git commits; the workspace is
read from disk), through one `git cat-file --batch` process."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from cvae.experiments.report import INFO_FILES


def revisions(exp_show: list[dict[str, Any]]) -> list[str]:
    """Every revision id in `dvc exp show --json` output (workspace included)."""
    out = []
    for entry in exp_show:
        out.append(entry.get("rev", ""))
        for exp in entry.get("experiments") or []:
            out += [rev.get("rev", "") for rev in exp.get("revs") or []]
    return [r for r in out if r]


def info_files(
    exp_show: list[dict[str, Any]], root: Path | None
) -> dict[str, dict[str, Any]]:
    """{revision: {info path: parsed JSON}} for the report's info files; a
    revision or file that cannot be read is left out (the report says "?")."""
    if root is None:
        return {}
    revs = revisions(exp_show)
    found: dict[str, dict[str, Any]] = {}
    if "workspace" in revs:
        for path in INFO_FILES:
            file = root / path
            data = _parse(file.read_bytes()) if file.is_file() else None
            if data is not None:
                found.setdefault("workspace", {})[path] = data
    commits = [r for r in revs if r != "workspace"]
    git = shutil.which("git")
    if not commits or git is None:
        return found
    queries = [(rev, path) for rev in commits for path in INFO_FILES]
    r = subprocess.run(
        [git, "cat-file", "--batch"],
        input="".join(f"{rev}:{path}\n" for rev, path in queries).encode(),
        capture_output=True,
        cwd=root,
    )
    if r.returncode != 0:
        return found
    out, pos = r.stdout, 0
    for rev, path in queries:
        end = out.find(b"\n", pos)
        if end < 0:
            break
        header = out[pos:end].split()
        pos = end + 1
        if len(header) != 3:  # "<name> missing" (or ambiguous): no content
            continue
        size = int(header[2])
        content = out[pos : pos + size]
        pos += size + 1  # the content, then a newline
        data = _parse(content) if header[1] == b"blob" else None
        if data is not None:
            found.setdefault(rev, {})[path] = data
    return found


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None
