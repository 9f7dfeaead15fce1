import json

import pytest
from typer.testing import CliRunner

from cvae.report import END, START, records, report, splice
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
    assert names == ["workspace", "main", "exp-a", "exp-b"]


def test_tables_put_the_paper_beside_ours() -> None:
    md = report(EXP_SHOW)
    conv_rows = [line for line in md.splitlines() if "| conv |" in line]
    assert len(conv_rows) == 1  # identical results shown once
    assert "10.5000 | 11.1087 | 0.8000 | 0.7000 | 0.7627" in conv_rows[0]
    coco = [line for line in md.splitlines() if line.startswith("| exp-")]
    # sorted by size: 64 first; the paper's cell for (128, add) is 628.75
    assert coco[0].startswith("| exp-b | 64 | concat")
    assert "628.75" in coco[1] and "random" in coco[1]


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
