"""Markdown tables, as the report, the results page and the benchmarks write them."""

from __future__ import annotations


def table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured markdown table (no trailing newline); cells as given."""
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)
