"""Where a benchmark keeps its rows: ``<stem>.json`` (the numbers) and
``<stem>.md`` (the table) beside the benchmarks, merged with earlier runs."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path

from cvae.core.files import atomic_path, write_json

HERE = Path(__file__).resolve().parent


def merge_and_write(
    stem: str,
    results: dict[str, dict],
    order: Iterable[str],
    table: Callable[[dict[str, dict]], str],
) -> dict[str, dict]:
    """Merge ``results`` into ``<stem>.json`` (rows of other runs stay), keep the
    rows in ``order``, write the json and ``<stem>.md``; returns the rows."""
    path = HERE / f"{stem}.json"
    done = json.loads(path.read_text()) if path.exists() else {}
    done.update(results)
    ordered = {k: done[k] for k in order if k in done}
    write_json(path, ordered)
    with atomic_path(HERE / f"{stem}.md") as tmp:
        Path(tmp).write_text(table(ordered), encoding="utf-8")
    return ordered
