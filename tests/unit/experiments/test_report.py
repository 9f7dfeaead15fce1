import json

import pytest
from typer.testing import CliRunner

from cvae.experiments.report import END, START, records, report, splice
from cvae_cli.main import app


def _rev(rev, name, coco=None, conv=None):
    metrics = {}
    if coco:
        metrics["metrics/coco.json"] = {"data": coco}
    if conv:
        metrics["metrics/fashion_conv.json"] = {"data": conv}
    metrics["metrics/missing.json"] = {"error": {"type": "FileNotFoundError"}}
    return {
        "rev": rev,
        "name": name,
        "data": {"params": {"params.yaml": {"data": {"size": 64}}}, "metrics": metrics},
    }


EXP_SHOW = [
    _rev(
        "workspace",
        None,
        conv={
            "mse": 10.5,
            "ssim": 0.8,
            "ssim_valid": 0.7,
            "conditioning": "concat",
            "epochs": 25,
            "fid": None,
        },
    ),
    {
        **_rev(
            "abc1234def",
            "main",
            conv={
                "mse": 10.5,
                "ssim": 0.8,
                "ssim_valid": 0.7,
                "conditioning": "concat",
                "epochs": 25,
                "fid": None,
            },
        ),
        "experiments": [
            {
                "revs": [
                    _rev(
                        "e1",
                        "exp-a",
                        coco={
                            "mse": 100.0,
                            "ssim": 0.5,
                            "size": 128,
                            "conditioning": "add",
                            "n": 8,
                            "clip_random_init": True,
                        },
                    )
                ]
            },
            {
                "revs": [
                    _rev(
                        "e2",
                        "exp-b",
                        coco={
                            "mse": 90.0,
                            "ssim": 0.55,
                            "size": 64,
                            "conditioning": "concat",
                            "n": 8,
                        },
                    )
                ]
            },
        ],
    },
]


def test_records_flatten_experiments() -> None:
    names = [r["name"] for r in records(EXP_SHOW)]
    assert names == ["workspace", "commit abc1234 (main)", "exp-a", "exp-b"]


def test_tables_put_the_paper_beside_ours() -> None:
    md = report(EXP_SHOW)
    conv_rows = [line for line in md.splitlines() if "| conv |" in line]
    assert len(conv_rows) == 1  # identical results shown once, with both names
    assert conv_rows[0].startswith("| workspace, commit abc1234 (main) | conv |")
    assert "10.5000 | 11.1087 | 0.8000 | 0.7000 | 0.7627" in conv_rows[0]
    coco = [line for line in md.splitlines() if line.startswith("| exp-")]
    # sorted by size: 64 first; the paper's cell for (128, add) is 628.75
    assert coco[0].startswith("| exp-b | 64 | concat")
    assert "628.75" in coco[1] and "random" in coco[1]
    assert coco[0].endswith("| ? |")  # no info record: staleness unknown


PARAMS = {
    "size": 64,
    "conditioning": "concat",
    "filter": {"subsets": ["bucolic"]},
    "embed": {"pretrained": "/ckpt/ViT-B-32.pt"},
    "coco": {"train": {"epochs": 30, "lr": 1e-3}},
}
RECORDED = {  # what coco_evaluate wrote: the params its outputs came from
    "size": 64,
    "filter.subsets": ["bucolic"],
    "embed.pretrained": "/ckpt/ViT-B-32.pt",
    "coco.train.epochs": 30,
    "coco.train.lr": 0.001,
}
COCO = {"mse": 90.0, "ssim": 0.5, "size": 64, "n": 8, "epochs": 30, "n_train": 40}
INFO = {
    "conditioning": "concat",
    "condition_on": "text",
    "clip_pretrained": "/ckpt/ViT-B-32.pt",
    "clip_random_init": False,
    "clip_sha256": "0123456789abcdef" * 4,
}


def _exp(rev: str, name: str, params: dict) -> dict:
    return {
        "rev": rev,
        "name": name,
        "data": {
            "params": {"params.yaml": {"data": params}},
            "metrics": {"metrics/coco.json": {"data": COCO}},
        },
    }


def _coco_rows(exps: list, infos: dict) -> list[list[str]]:
    """Table 2's rows of experiments ``exps`` on a baseline commit without metrics."""
    base = {"rev": "base000", "data": {}, "experiments": [{"revs": [e]} for e in exps]}
    table = report([base], infos).split("Table 2")[1]
    return [
        [c.strip() for c in line.strip("|").split("|")]
        for line in table.splitlines()
        if line.startswith("| ") and not line.startswith(("| exp |", "| --- |"))
    ]


def test_stale_outputs_are_flagged_with_the_keys_that_differ() -> None:
    changed = {**PARAMS, "coco": {"train": {"epochs": 2, "lr": 1e-3}}}
    exp_show = [_exp("r1", "fresh", PARAMS), _exp("r2", "targeted", changed)]
    info = {"info/coco.json": {**INFO, "params": RECORDED}}
    rows = _coco_rows(exp_show, {"r1": info, "r2": info})
    assert len(rows) == 2  # same numbers, different staleness: not merged
    fresh, targeted = rows
    assert fresh[0] == "fresh" and fresh[-1] == "no"
    assert targeted[0] == "targeted"
    assert targeted[-1] == "**stale** coco.train.epochs: params 2, outputs 30"
    # the descriptive columns say what the outputs used, not the params
    assert fresh[4] == "bucolic" and fresh[5] == "30" and fresh[6] == "40"
    assert fresh[-2] == "/ckpt/ViT-B-32.pt (0123456789ab)"


def test_a_checkpoint_set_but_not_used_is_stale_and_shown_as_used() -> None:
    # params name a checkpoint, but the evaluation ran on random CLIP
    used = {**INFO, "clip_pretrained": "none", "clip_random_init": True}
    recorded = {**RECORDED, "embed.pretrained": "none"}
    rows = _coco_rows(
        [_exp("r1", "ckpt", PARAMS)],
        {"r1": {"info/coco.json": {**used, "params": recorded}}},
    )
    assert rows[0][-2] == "random"
    assert "embed.pretrained: params /ckpt/ViT-B-32.pt, outputs none" in rows[0][-1]


def test_identical_results_are_shown_once_with_all_names() -> None:
    exp_show = [_exp(f"r{i}", f"e{i}", PARAMS) for i in range(3)]
    info = {"info/coco.json": {**INFO, "params": RECORDED}}
    rows = _coco_rows(exp_show, {f"r{i}": info for i in range(3)})
    assert [r[0] for r in rows] == ["e0, e1, e2"]


def test_info_files_are_read_from_git_revisions_and_the_workspace(tmp_path) -> None:
    import subprocess

    from cvae_cli.revisions import info_files

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
            cwd=tmp_path,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()

    git("init", "-q")
    (tmp_path / "info").mkdir()
    info = tmp_path / "info" / "coco.json"
    info.write_text(json.dumps({"params": {"size": 64}}))
    (tmp_path / "info" / "fashion_fc.json").write_text("not json")
    git("add", ".")
    git("commit", "-qm", "one")
    first = git("rev-parse", "HEAD")
    info.write_text(json.dumps({"params": {"size": 128}}))
    git("commit", "-qam", "two")
    second = git("rev-parse", "HEAD")
    info.write_text(json.dumps({"params": {"size": 256}}))  # uncommitted
    exp_show = [
        {"rev": "workspace"},
        {"rev": second, "experiments": [{"revs": [{"rev": first}]}]},
    ]
    found = info_files(exp_show, tmp_path)
    assert found["workspace"] == {"info/coco.json": {"params": {"size": 256}}}
    assert found[second] == {"info/coco.json": {"params": {"size": 128}}}
    assert found[first] == {"info/coco.json": {"params": {"size": 64}}}


def test_lineage_differences_compare_numbers_by_value() -> None:
    from cvae.experiments.lineage import MISSING, differences

    params = {"a": {"lr": 1e-3, "n": 2, "on": True, "xs": [1, 2]}}
    assert differences({"a.lr": 0.001, "a.n": 2.0, "a.xs": [1.0, 2]}, params) == {}
    assert differences({"a.on": 1}, params) == {"a.on": (True, 1)}
    assert differences({"a.gone": 3}, params) == {"a.gone": (MISSING, 3)}


def test_splice_and_cli(tmp_path) -> None:
    doc = f"# title\n{START}\nold\n{END}\ntail\n"
    assert splice(doc, "new") == f"# title\n{START}\nnew\n{END}\ntail\n"
    with pytest.raises(ValueError):
        splice("no markers", "x")
    exp = tmp_path / "exp.json"
    exp.write_text(json.dumps(EXP_SHOW))
    readme = tmp_path / "README.md"
    readme.write_text(doc)
    r = CliRunner().invoke(
        app, ["report", "--exp-json", str(exp), "--readme", str(readme)]
    )
    assert r.exit_code == 0, r.output
    text = readme.read_text()
    assert "Table 1" in text and "exp-b" in text and text.endswith(f"{END}\ntail\n")
    r = CliRunner().invoke(app, ["report", "--exp-json", str(tmp_path / "nope.json")])
    assert r.exit_code == 2 and "not found" in r.output


def test_settings_that_cannot_change_outputs_never_make_them_stale() -> None:
    from cvae.experiments.lineage import NOT_OUTPUT_SETTINGS, differences

    recorded = {"embed.num_workers": 1, "coco.train.memory_budget_mib": 512}
    params = {"embed": {"num_workers": 0}, "coco": {"train": {"memory_budget_mib": 9}}}
    assert differences(recorded, params) == {}
    assert "shard.workers" in NOT_OUTPUT_SETTINGS
