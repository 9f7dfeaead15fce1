"""Progress for people: bars for long steps, and the lines that report them.

Bars go to stderr, only when it is a terminal: tqdm's ``disable=None`` hides a
bar when stderr is not a TTY, so DVC logs and CI output stay clean while a
person at a terminal sees every long step move. Progress lines (one per epoch)
go to stdout at once, also into a pipe or a CI log, with numbers rounded for
reading (the files keep them exact).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def bar(
    items: Iterable[T],
    desc: str,
    *,
    total: int | None = None,
    unit: str = "it",
    quiet: bool = False,
) -> Iterable[T]:
    """``items`` wrapped in a bar (hidden off a terminal, or when ``quiet``)."""
    return tqdm(
        items,
        desc=desc,
        total=total,
        unit=unit,
        leave=False,
        disable=True if quiet else None,
        file=sys.stderr,
        mininterval=1.0,
    )


def step_bar(steps: int, desc: str, *, quiet: bool = False) -> tqdm:
    """A per-epoch bar over ``range(steps)`` (``quiet`` on ranks other than 0)."""
    return bar(range(steps), desc, unit="step", quiet=quiet)


def say(line: str) -> None:
    """Print a progress line on stdout now (a pipe holds it back otherwise)."""
    print(line, flush=True)


def number(value: float) -> str:
    """A metric for reading: 2 decimals from 1 up (244.79), else 4 significant
    digits (0.8512, 0.0003142)."""
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.4g}"
