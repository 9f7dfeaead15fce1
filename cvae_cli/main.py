"""`cvae` command: generate images from text with a trained model.

cvae generate "Make a dress" -n 16 -s 0 -o dress.png
cvae generate "Cows grazing on a green hillside. The sky is blue." -m coco

Exit status: 0 on success, 1 on a runtime error (a missing model, weights that
do not match), 2 on a usage error (a bad option or prompt), as click does.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

import typer

import cvae
from cvae.core.errors import CVAEError, UsageError, exit_code, plural
from cvae.params.schema import SEED_MAX
from cvae_cli.models import (
    FASHION_BEST,
    METRICS,
    MODELS,
    QUICK_START,
    model_name,
    project_root,
    resolve_model,
)

DIST = "cvae-t2i"  # the distribution name on the package index

app = typer.Typer(
    add_completion=False,
    rich_markup_mode=None,  # plain click errors: "Error: ..." on one line
    no_args_is_help=True,
    help="Conditional VAEs for text-to-image generation.",
)

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
# Options that `generate` and `demo` share.
DEVICE = typer.Option("auto", help="auto | cpu | cuda")
CLIP_CHECKPOINT = typer.Option(
    None, help="CLIP weights for text models (default: what the model was trained with)"
)


def _fail(e: CVAEError) -> NoReturn:
    typer.echo(f"error: {e}", err=True)
    raise typer.Exit(exit_code(e))


def _version(value: bool) -> None:
    if value:
        import torch

        typer.echo(f"{DIST} {cvae.__version__} (torch {torch.__version__})")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False,
        "--version",
        "-V",
        callback=_version,
        is_eager=True,
        help="print the version and exit",
    ),
) -> None:
    """Conditional VAEs for text-to-image generation."""


@app.command()
def generate(
    prompt: str = typer.Argument(..., help="text, e.g. 'Make a dress'"),
    model: str = typer.Option(
        "fashion",
        "--model",
        "-m",
        help=f"fashion (the best trained: {', '.join(FASHION_BEST)}), one of "
        f"{sorted(MODELS)} or a path",
    ),
    n: int = typer.Option(16, "--n", "-n", min=1, max=1024, help="number of images"),
    seed: int = typer.Option(
        0,
        "--seed",
        "-s",
        min=0,
        max=SEED_MAX,
        help="noise seed: the same seed gives the same images",
    ),
    out: Path = typer.Option(
        Path("generated.png"),
        "--out",
        "-o",
        help="output grid: .png, .jpg or .webp (by extension)",
    ),
    nrow: int = typer.Option(8, min=1, help="images per grid row"),
    scale: int = typer.Option(
        1, min=1, max=32, help="upscale the grid k times (nearest neighbour)"
    ),
    labels: bool = typer.Option(
        False,
        "--labels/--no-labels",
        help="a title naming prompt, condition, seed (and temperature)",
    ),
    temperature: float | None = typer.Option(
        None,
        "--temperature",
        "-t",
        help="models with a fitted prior (gmm, vaegan): its sampling spread "
        "instead of the model file's; below 1 draws closer to the prior's means, "
        "less varied (for vaegan also more recognisable)",
    ),
    device: str = DEVICE,
    clip_checkpoint: str = CLIP_CHECKPOINT,
) -> None:
    """Generate a grid of images for PROMPT."""
    from cvae_cli.generate import generate_from_prompt

    name = model_name(model)
    try:
        info = generate_from_prompt(
            resolve_model(name),
            prompt,
            n=n,
            seed=seed,
            out=out,
            nrow=nrow,
            device=device,
            clip_checkpoint=clip_checkpoint,
            scale=scale,
            labels=labels,
            temperature=temperature,
        )
    except CVAEError as e:
        _fail(e)
    images = plural(n, "image")
    typer.echo(
        f"{out}: {images} for {info['condition']} ({info['sampled']}) from {name}"
    )
    for w in info.get("warnings", []):
        typer.echo(f"WARNING: {w}", err=True)


@app.command()
def info(model: str = typer.Argument("fashion", help="model name or path")) -> None:
    """Print a model file's architecture, config and what it is conditioned on."""
    from cvae.models.checkpoint import read_metadata
    from cvae_cli.generate import conditioned_on

    try:
        meta = read_metadata(resolve_model(model))
    except CVAEError as e:
        _fail(e)
    json.dump({"conditioned_on": conditioned_on(meta), **meta}, sys.stdout, indent=2)
    sys.stdout.write("\n")


@app.command()
def check(
    params: Path = typer.Option(Path("params.yaml"), help="params file to check"),
) -> None:
    """Check a params file against the schema: one line naming the key, the line
    or the value, and the fix (DVC's own messages for a broken params.yaml span
    several lines and name no fix)."""
    from cvae.params.loading import load_params

    try:
        load_params(params)
    except CVAEError as e:
        _fail(e)
    typer.echo(f"{params}: valid")


def served_models(extra: list[Path]) -> dict[str, tuple[Path, Path | None]]:
    """The trained models of the project (by name, with their metrics files) and
    the ``extra`` model files (by file name), for the demo."""
    out: dict[str, tuple[Path, Path | None]] = {}
    root = project_root()
    if root is not None:
        for name, metrics in METRICS.items():
            path = root / MODELS[name][0]
            if path.is_file():
                out[name] = (path, root / metrics)
    for path in extra:
        if not path.is_file():
            raise CVAEError(f"model file {path} not found: check the path")
        name, k = path.stem, 2
        while name in out:
            name, k = f"{path.stem}-{k}", k + 1
        out[name] = (path, None)
    if not out:
        where = f"in {root}" if root else "here (no cvae project holds this folder)"
        raise CVAEError(
            f"no trained model {where}: run `dvc repro` (or the quick start: "
            f"{QUICK_START}), or pass --model PATH"
        )
    return out


@app.command()
def demo(
    host: str = typer.Option(
        "127.0.0.1", help="address to listen on (127.0.0.1: this machine only)"
    ),
    port: int = typer.Option(7860, min=1, max=65535, help="port to listen on"),
    model: list[Path] = typer.Option(
        [], "--model", "-m", help="a .safetensors file to serve as well (repeatable)"
    ),
    device: str = DEVICE,
    clip_checkpoint: str = CLIP_CHECKPOINT,
) -> None:
    """Serve a local page: type a prompt, see every trained model's samples."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        _fail(
            UsageError(
                "the demo needs its extra: pip install -e '.[demo]' "
                "(bash scripts/setup.sh installs it)"
            )
        )
    from cvae_cli.demo import Demo, serve

    try:
        served = served_models(model)
        page = Demo(served, device=device, clip_checkpoint=clip_checkpoint)
    except CVAEError as e:
        _fail(e)
    if host not in LOCAL_HOSTS:
        typer.echo(
            f"WARNING: listening on {host}: other machines can reach the demo",
            err=True,
        )
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/"
    typer.echo(f"cvae demo: {', '.join(served)} on {url} (Ctrl-C stops)")
    serve(page, host=host, port=port)


def _exp_show(all_commits: bool) -> str:
    """`dvc exp show --json` of the project (``-A``: every commit), or a
    one-line error."""
    beside = Path(sys.executable).parent / "dvc"  # the same environment, not activated
    dvc = shutil.which("dvc") or (str(beside) if beside.is_file() else None)
    if dvc is None:
        raise CVAEError(
            "dvc not found on PATH: activate the project's environment "
            "(. .venv/bin/activate) or pass --exp-json"
        )
    cmd = [dvc, "exp", "show", "--json"] + (["--all-commits"] if all_commits else [])
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=project_root())
    if r.returncode != 0:
        raise CVAEError(f"`dvc exp show --json` failed: {r.stderr.strip()[:200]}")
    return r.stdout


def _load_exp_show(exp_json: Path | None, all_commits: bool) -> list[dict]:
    """The parsed `dvc exp show --json`: from ``exp_json``, else run here."""
    if exp_json is not None:
        if not exp_json.is_file():
            raise UsageError(f"{exp_json} not found: save `dvc exp show --json` first")
        try:
            raw = exp_json.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise CVAEError(f"cannot read {exp_json} ({e}): re-create it") from e
    else:
        raw = _exp_show(all_commits)
    try:
        exp_show = json.loads(raw)
    except json.JSONDecodeError as e:
        raise CVAEError(f"experiment JSON is not valid ({e}): re-create it") from e
    if not isinstance(exp_show, list) or not all(isinstance(x, dict) for x in exp_show):
        raise CVAEError(
            "experiment JSON is not a list of revisions (DVC 3's "
            "`dvc exp show --json`): re-create it with DVC 3"
        )
    return exp_show


def _write(path: Path, text: str) -> None:
    from cvae.core.files import atomic_open

    try:
        with atomic_open(path) as f:
            f.write(text)
    except OSError as e:
        raise CVAEError(f"cannot write {path} ({e.strerror or e}): fix the path") from e


@app.command()
def report(
    exp_json: Path = typer.Option(
        None, help="saved `dvc exp show --json` output (default: run it here)"
    ),
    all_commits: bool = typer.Option(
        False,
        "--all-commits",
        "-A",
        help="every commit and its experiments (default: the workspace, HEAD and "
        "HEAD's experiments)",
    ),
    out: Path = typer.Option(None, "--out", "-o", help="write the markdown here"),
    readme: Path = typer.Option(
        None,
        help="replace the report section (between its markers) of this Markdown "
        "page, e.g. docs/results.md",
    ),
) -> None:
    """Paper-style Table 1 and 2 of every experiment, our numbers beside the paper's."""
    from cvae.experiments.report import report as make_report
    from cvae.experiments.report import splice
    from cvae_cli.revisions import info_files

    try:
        exp_show = _load_exp_show(exp_json, all_commits)
        md = make_report(exp_show, info_files(exp_show, project_root()))
        if readme is not None:
            try:
                text = splice(readme.read_text(), md.rstrip("\n"))
            except (OSError, ValueError) as e:
                raise CVAEError(f"cannot update {readme}: {e}") from e
            _write(readme, text)
        if out is not None:
            _write(out, md)
    except CVAEError as e:
        _fail(e)
    if out is None and readme is None:
        typer.echo(md)


@app.command()
def compare(
    runs: list[str] = typer.Argument(
        ...,
        help="two or more runs: experiment names, workspace, a branch or a sha",
    ),
    exp_json: Path = typer.Option(
        None, help="saved `dvc exp show --json --all-commits` output"
    ),
) -> None:
    """The params that differ between runs and each model's headline metrics,
    one row per run, the paper beside them (fits 120 columns)."""
    from cvae.experiments.compare import compare as make_compare
    from cvae.experiments.compare import select
    from cvae.experiments.report import records
    from cvae_cli.revisions import info_files

    try:
        if len(runs) < 2:
            raise UsageError("name two or more runs to compare, e.g. quick HEAD")
        exp_show = _load_exp_show(exp_json, all_commits=True)
        recs = records(exp_show, info_files(exp_show, project_root()))
        typer.echo(make_compare(select(recs, runs)), nl=False)
    except CVAEError as e:
        _fail(e)


@app.command("plots-template")
def plots_template(
    out: Path = typer.Argument(
        None,
        help="file to write (default: the project's .dvc/plots-page.html, "
        "which .dvc/config names)",
    ),
) -> None:
    """Write the page template that lets `dvc plots show` and `dvc plots diff`
    draw offline: vega, vega-lite and vega-embed inline instead of from a CDN
    (scripts/setup.sh runs this)."""
    from cvae_cli.plots_page import TEMPLATE, write_plots_template

    try:
        if out is None:
            root = project_root()
            if root is None:
                raise UsageError(
                    "no cvae project holds this folder: run it in the project "
                    "or name the file"
                )
            out = root / TEMPLATE
        size, names = write_plots_template(out)
    except CVAEError as e:
        _fail(e)
    typer.echo(f"{out}: dvc plots page template, {names} inline ({size:,} bytes)")


if __name__ == "__main__":
    app()
