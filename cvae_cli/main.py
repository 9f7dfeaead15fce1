"""`cvae` command: generate images from text with a trained model.

cvae generate "Make a dress" --n 16 --seed 0 --out dress.png
cvae generate "Cows grazing on a green hillside. The sky is blue." --model coco
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from cvae.errors import CVAEError
from cvae.params import SEED_MAX

app = typer.Typer(
    add_completion=False,
    rich_markup_mode=None,  # plain click errors: "Error: ..." on one line
    no_args_is_help=True,
    help="Conditional VAEs for text-to-image generation.",
)

# Model names -> files the pipeline writes (relative to the project root).
MODELS = {
    "fashion": Path("data/fashion/conv/model.safetensors"),
    "fashion-conv": Path("data/fashion/conv/model.safetensors"),
    "fashion-fc": Path("data/fashion/fc/model.safetensors"),
    "coco": Path("data/coco/model.safetensors"),
}


def resolve_model(model: str) -> Path:
    """A model name from MODELS or a path to a .safetensors file."""
    if model in MODELS:
        return MODELS[model]
    path = Path(model)
    if path.suffix == ".safetensors" or path.exists():
        return path
    raise CVAEError(
        f"unknown model {model!r}: use one of {sorted(MODELS)} or a file path"
    )


def _fail(e: CVAEError) -> None:
    typer.echo(f"error: {e}", err=True)
    raise typer.Exit(2)


@app.command()
def generate(
    prompt: str = typer.Argument(..., help="text, e.g. 'Make a dress'"),
    model: str = typer.Option("fashion", help=f"one of {sorted(MODELS)} or a path"),
    n: int = typer.Option(16, "--n", min=1, max=1024, help="number of images"),
    seed: int = typer.Option(
        0,
        min=0,
        max=SEED_MAX,
        help="noise seed: the same seed gives the same images",
    ),
    out: Path = typer.Option(
        Path("generated.png"), help="output grid: .png, .jpg or .webp (by extension)"
    ),
    nrow: int = typer.Option(8, min=1, help="images per grid row"),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    clip_checkpoint: str = typer.Option(
        None,
        help="CLIP weights for text models (default: what the model was trained with)",
    ),
) -> None:
    """Generate a grid of images for PROMPT."""
    from cvae.generate import generate_from_prompt

    try:
        path = resolve_model(model)
        info = generate_from_prompt(
            path,
            prompt,
            n=n,
            seed=seed,
            out=out,
            nrow=nrow,
            device=device,
            clip_checkpoint=clip_checkpoint,
        )
    except CVAEError as e:
        _fail(e)
    typer.echo(f"{out}: {n} images for {info['condition']} (seed {seed})")
    for w in info.get("warnings", []):
        typer.echo(f"WARNING: {w}", err=True)


@app.command()
def info(model: str = typer.Argument("fashion", help="model name or path")) -> None:
    """Print a model file's architecture and config."""
    import json

    from cvae.checkpoint import read_metadata

    try:
        meta = read_metadata(resolve_model(model))
    except CVAEError as e:
        _fail(e)
    json.dump(meta, sys.stdout, indent=2)
    sys.stdout.write("\n")


@app.command()
def report(
    exp_json: Path = typer.Option(
        None,
        help="saved `dvc exp show -A --json` output (default: run it here; -A "
        "includes experiments made on earlier commits)",
    ),
    out: Path = typer.Option(None, help="write the markdown to this file"),
    readme: Path = typer.Option(
        None, help="replace the report section of this README (between markers)"
    ),
) -> None:
    """Paper-style Table 1 and 2 of every experiment, our numbers beside the paper's."""
    import json
    import subprocess

    from cvae.io import atomic_open
    from cvae.report import report as make_report
    from cvae.report import splice

    try:
        if exp_json is not None:
            if not exp_json.is_file():
                raise CVAEError(
                    f"{exp_json} not found: save `dvc exp show --json` first"
                )
            raw = exp_json.read_text()
        else:
            r = subprocess.run(
                ["dvc", "exp", "show", "--all-commits", "--json"],
                capture_output=True,
                text=True,
            )
            if r.returncode != 0:
                raise CVAEError(
                    f"`dvc exp show -A --json` failed: {r.stderr.strip()[:200]}"
                )
            raw = r.stdout
        try:
            md = make_report(json.loads(raw))
        except json.JSONDecodeError as e:
            raise CVAEError(f"experiment JSON is not valid ({e}): re-create it") from e
        if readme is not None:
            try:
                text = splice(readme.read_text(), md.rstrip("\n"))
            except (OSError, ValueError) as e:
                raise CVAEError(f"cannot update {readme}: {e}") from e
            with atomic_open(readme) as f:
                f.write(text)
        if out is not None:
            with atomic_open(out) as f:
                f.write(md)
    except CVAEError as e:
        _fail(e)
    if out is None and readme is None:
        typer.echo(md)


if __name__ == "__main__":
    app()
