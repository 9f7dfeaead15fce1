"""The benchmark report: its table is computed from the cases' measurements.

(The benchmarks themselves are run on purpose: ``python -m benchmarks``.)
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from benchmarks.__main__ import PAIRS, table

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results-cpu.json"


def test_table_ratios_come_from_the_measurements() -> None:
    recorded = json.loads(RESULTS.read_text())
    results = recorded["results"]
    args = argparse.Namespace(**recorded["args"])
    text = table(results, args)
    rows = [ln for ln in text.splitlines() if ln.startswith("| ") and "---" not in ln]
    assert len(rows) == 1 + len(PAIRS)  # header + one row per pair
    for (what, ours, base, key), row in zip(PAIRS, rows[1:], strict=True):
        ratio = float(re.search(r"\*\*([\d.]+)x\*\*", row).group(1))
        assert row.startswith(f"| {what} |")
        assert ratio == round(results[ours][key] / results[base][key], 1)
    assert "n/a" in text  # no GPU in the recorded CPU run: no CUDA columns invented
