"""The benchmark report: its table is computed from the cases' measurements.

(The benchmarks themselves are run on purpose: ``python -m benchmarks``.)
"""

from __future__ import annotations

import argparse
import json
import re

from conftest import ROOT

from benchmarks.__main__ import PAIRS, table

RESULTS = ROOT / "benchmarks" / "results-cpu.json"


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


def test_scale_fixture_is_real_distinct_and_passes_the_filter(
    tmp_path, coco_sample
) -> None:
    """The scale fixture: real captions and photos, no two files alike, every
    image kept by the default filter; the train2017-sized captions file."""
    import hashlib

    from benchmarks.scale_fixture import build, captions_only
    from cvae.data.coco import filter_coco
    from cvae.params.loading import load_params

    folder = build(30, tmp_path, workers=1)
    files = sorted((folder / "images").iterdir())
    assert len(files) == 30
    assert len({hashlib.sha256(f.read_bytes()).digest() for f in files}) == 30
    p = load_params(ROOT / "params.yaml").filter
    keep = {k: p.keywords[k] for k in p.subsets}
    _, counts = filter_coco(
        folder / "captions.json", folder / "images", keep, val_fraction=0.2, seed=0
    )
    assert counts["kept"] == 30 and counts["missing"] == 0
    data = json.loads(captions_only(600, tmp_path).read_text())
    assert len(data["images"]) == 600 and len(data["annotations"]) >= 5 * 600
    assert len({im["id"] for im in data["images"]}) == 600
