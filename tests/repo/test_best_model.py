"""`cvae generate` without --model uses the best Fashion-MNIST model: the order
it tries them in must agree with the committed metrics."""

from __future__ import annotations

import json
from pathlib import Path

from cvae_cli.models import FASHION_BEST

ROOT = Path(__file__).resolve().parents[2]


def _metrics(name: str) -> dict:
    arch = name.removeprefix("fashion-")
    return json.loads((ROOT / "metrics" / f"fashion_{arch}.json").read_text())


def test_the_default_model_is_the_best_by_the_committed_metrics() -> None:
    ranked = [_metrics(name) for name in FASHION_BEST]
    for better, worse in zip(ranked, ranked[1:], strict=False):
        assert better["cond_accuracy"] > worse["cond_accuracy"]
        fids = better.get("fid_generate"), worse.get("fid_generate")
        if None not in fids:  # FID is on only with fashion.fid.samples > 0
            assert fids[0] < fids[1]
    ablation = json.loads((ROOT / "benchmarks" / "fashion_ablation.json").read_text())
    proxy = [ablation[key]["fid_proxy"] for key in ("vaegan", "gmm", "conv")]
    assert proxy == sorted(proxy)
