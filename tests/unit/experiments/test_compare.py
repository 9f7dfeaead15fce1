"""`cvae compare`: the changed params and each model's headline metrics of named
runs, in a terminal's width, on the repository's own metrics files."""

from __future__ import annotations

import copy
import json

import pytest
import yaml
from conftest import ROOT

from cvae.core.errors import UsageError
from cvae.experiments.compare import WIDTH, compare, select
from cvae.experiments.lineage import changed_params
from cvae.models import FASHION_ARCHS

METRICS = (*(f"metrics/fashion_{a}.json" for a in FASHION_ARCHS), "metrics/coco.json")
INFOS = (*(f"info/fashion_{a}.json" for a in FASHION_ARCHS), "info/coco.json")


def _repo_record(name: str, rev: str) -> dict:
    """A record as `cvae.experiments.report.records` makes it, from the files
    committed in this repository."""
    return {
        "name": name,
        "rev": rev,
        "params": yaml.safe_load((ROOT / "params.yaml").read_text()),
        "metrics": {p: json.loads((ROOT / p).read_text()) for p in METRICS},
        "info": {p: json.loads((ROOT / p).read_text()) for p in INFOS},
    }


@pytest.fixture
def runs() -> list[dict]:
    """HEAD, and a quick experiment whose conv model trained 2 epochs and whose
    classifier (behind cond. acc.) trained 1, left over from an earlier -S."""
    head = _repo_record("commit ac45659 (main)", "ac45659" + "0" * 33)
    quick = copy.deepcopy(head) | {"name": "quick", "rev": "f00dfeed" + "0" * 32}
    quick["params"]["fashion"]["train"]["epochs"] = 2
    quick["params"]["fashion"]["classifier"]["epochs"] = 1
    conv = quick["metrics"]["metrics/fashion_conv.json"]
    conv.update(mse=12.5, cond_accuracy=0.913, classifier_test_accuracy=0.864)
    recorded = quick["info"]["info/fashion_conv.json"]["params"]
    recorded.update({"fashion.train.epochs": 2, "fashion.classifier.epochs": 1})
    return [head, quick]


def test_compare_names_every_changed_param_and_only_the_models_that_differ(
    runs,
) -> None:
    text = compare(select(runs, ["quick", "main"]))
    lines = text.splitlines()
    assert all(len(line) <= WIDTH for line in lines), max(map(len, lines))
    assert lines[0] == "runs: quick, ac45659"
    changed = [line.split() for line in lines if line.startswith("  fashion.")]
    head_epochs = runs[0]["params"]["fashion"]["classifier"]["epochs"]
    assert ["fashion.classifier.epochs", "quick=1", f"ac45659={head_epochs}"] in changed
    assert ["fashion.train.epochs", "quick=2", "ac45659=25"] in changed
    # conv differs: a row per run and the paper's row; the rest in one line
    conv = lines.index("fashion-conv:")
    header, quick, head, paper = (lines[conv + i].split() for i in range(1, 5))
    assert header[:3] == ["run", "MSE", "SSIM"]
    assert quick[:2] == ["quick", "12.5000"] and quick[-2:] == ["0.913", "0.864"]
    assert head[0] == "ac45659" and paper[:3] == ["paper", "11.1087", "0.7627"]
    assert "paper FID 50.30 (protocol not stated" in text
    assert lines[-1] == (
        "the same metrics in every run: fashion-fc, fashion-gmm, fashion-vaegan, coco"
    )
    assert "outputs not from its params" not in text  # both runs are consistent


def test_compare_flags_a_run_whose_outputs_are_not_from_its_params(runs) -> None:
    runs[1]["info"]["info/fashion_conv.json"]["params"]["fashion.train.epochs"] = 25
    text = compare(select(runs, ["quick", "ac4565"]))
    assert (
        "! quick: outputs not from its params (fashion.train.epochs: params 2, "
        "outputs 25)" in text
    )


def test_runs_are_named_by_experiment_branch_or_sha(runs) -> None:
    assert select(runs, ["main", "f00d", "quick"]) == [runs[0], runs[1], runs[1]]
    with pytest.raises(
        UsageError, match=r"no run named 'nope': .* \(here: ac45659, quick\)"
    ):
        select(runs, ["nope"])


def test_identical_runs_have_no_changed_params(runs) -> None:
    assert changed_params([runs[0]["params"], runs[0]["params"]]) == []
    text = compare([runs[0], runs[0]])
    assert "params: the same in every run" in text


def test_report_names_settings_that_differ_without_a_column(runs) -> None:
    from cvae.experiments.report import unshown

    line = unshown(runs, "fashion")
    head_epochs = runs[0]["params"]["fashion"]["classifier"]["epochs"]
    assert (
        f"settings without a column: fashion.classifier.epochs ({head_epochs}, 1)"
        in line
    )
    assert "fashion.train.epochs" not in line  # Table 1 has an epochs column
    assert unshown(runs, "coco") == ""  # the COCO settings are the same
