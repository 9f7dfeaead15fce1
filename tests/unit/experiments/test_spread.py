"""Table 1 over training seeds: grouping by the recorded settings, the numbers,
and the count of seeds that beat the paper."""

import statistics

from cvae.experiments.report import PAPER_TABLE1, report
from cvae.experiments.spread import seed_runs, spread_table

BASE = {"fashion.train.epochs": 25, "fashion.model.conv.conditioning": "concat"}


def _rec(name, seed, mse, ssim, *, epochs=25, arch="conv", **extra):
    params = BASE | {"fashion.train.epochs": epochs, "fashion.train.seed": seed}
    return {
        "name": name,
        "rev": name,
        "params": {},
        "metrics": {
            f"metrics/fashion_{arch}.json": {
                "mse": mse,
                "ssim": ssim,
                "ssim_valid": ssim - 0.02,
                "cond_accuracy": 0.8,
            }
        },
        "info": {f"info/fashion_{arch}.json": {"params": params | extra}},
    }


def test_runs_group_by_settings_and_a_seed_counts_once() -> None:
    recs = [
        _rec("workspace", 0, 9.25, 0.79),
        _rec("commit a", 0, 9.25, 0.79),  # the same outputs as the workspace
        _rec("seed-1", 1, 9.31, 0.78),
        _rec("short", 2, 12.0, 0.7, epochs=5),  # other settings: its own group
        # a speed-only setting does not make another group
        _rec("seed-2", 2, 9.19, 0.80, **{"embed.num_workers": 4}),
    ]
    groups = seed_runs(recs, "conv")
    assert [sorted(seeds) for _, seeds in groups] == [[0, 1, 2], [2]]


def test_the_table_gives_mean_sd_range_and_wins_against_the_paper() -> None:
    mses, ssims = [9.25, 9.31, 11.2], [0.79, 0.78, 0.75]
    recs = [_rec(f"s{i}", i, m, s) for i, (m, s) in enumerate(zip(mses, ssims))]
    md = spread_table(recs, PAPER_TABLE1)
    row = next(line for line in md.splitlines() if line.startswith("| conv |"))
    mean, sd = statistics.fmean(mses), statistics.stdev(mses)
    assert f"{mean:.4f} ± {sd:.4f} (9.2500–11.2000)" in row
    # paper conv: MSE 11.1087, SSIM 0.7627 -> 2 of 3 seeds beat MSE and SSIM
    assert "MSE 2/3; SSIM (full map) 2/3; SSIM (valid) 1/3" in row
    assert "| conv | 0, 1, 2 |" in row


def test_one_seed_gives_no_table_and_the_report_names_it_when_there_are_more() -> None:
    assert spread_table([_rec("w", 0, 9.0, 0.8)], PAPER_TABLE1) == ""
    exp_show = []
    for seed, mse in ((0, 9.25), (1, 9.31)):
        params = {"fashion": {"train": {"seed": seed}}}
        metrics = {"mse": mse, "ssim": 0.79, "ssim_valid": 0.77}
        exp_show.append(
            {
                "rev": f"r{seed}",
                "name": None,
                "data": {
                    "params": {"params.yaml": {"data": params}},
                    "metrics": {"metrics/fashion_conv.json": {"data": metrics}},
                },
            }
        )
    md = report(
        exp_show,
        {
            f"r{s}": {
                "info/fashion_conv.json": {"params": BASE | {"fashion.train.seed": s}}
            }
            for s in (0, 1)
        },
    )
    assert "**Table 1 over training seeds**" in md
    assert "| conv | 0, 1 |" in md
