"""`cvae generate` without --model uses the best Fashion-MNIST model: the order
it tries them in must agree with the committed metrics."""

from __future__ import annotations

import json
from pathlib import Path

from cvae_cli.main import FASHION_BEST

ROOT = Path(__file__).resolve().parents[2]


def _metrics(name: str) -> dict:
    arch = name.removeprefix("fashion-")
    return json.loads((ROOT / "metrics" / f"fashion_{arch}.json").read_text())


def test_the_default_model_is_the_best_by_the_committed_metrics() -> None:
    best, *others = (_metrics(name) for name in FASHION_BEST)
    for m in others:
        assert best["cond_accuracy"] > m["cond_accuracy"]
        if best.get("fid_generate") is not None and m.get("fid_generate") is not None:
            assert best["fid_generate"] < m["fid_generate"]
    ablation = json.loads((ROOT / "benchmarks" / "fashion_ablation.json").read_text())
    assert ablation["gmm"]["fid_proxy"] < ablation["conv"]["fid_proxy"]
