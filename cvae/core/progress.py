"""Progress bars for long steps: on stderr, only when it is a terminal.

tqdm's ``disable=None`` hides a bar when stderr is not a TTY, so DVC logs and CI
output stay clean while a person at a terminal sees every long step move.
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
