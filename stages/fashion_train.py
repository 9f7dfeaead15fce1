"""Stage fashion_train: train one Fashion-MNIST CVAE of a registered architecture."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cvae.core import distributed
from cvae.core.errors import CVAEError
from cvae.core.files import check_writable
from cvae.models import FASHION_ARCHS
from cvae.training.fashion import train_fashion
from cvae.training.history import summary
from stages._common import load, stage_main, write_live


@stage_main
def main(
    arch: str = typer.Option(..., help=f"one of {', '.join(FASHION_ARCHS)}"),
    data: Path = typer.Option(..., help="dataset .npz from fashion_data"),
    model_out: Path = typer.Option(..., help="output model .safetensors"),
    history: Path = typer.Option(..., help="per-epoch metrics JSON (DVC plot)"),
    state: Path = typer.Option(..., help="resume state file (kept only while running)"),
    live: Annotated[
        Path | None, typer.Option(help="DVCLive folder: per-epoch loss and ELBO terms")
    ] = None,
    params: Path = typer.Option(Path("params.yaml"), help="params file"),
) -> None:
    check_writable(model_out, history, state, live)  # before any work
    if arch not in FASHION_ARCHS:
        raise CVAEError(f"--arch {arch!r}: use one of {list(FASHION_ARCHS)}")
    p = load(params).fashion
    hist = train_fashion(arch, p, data, model_out, history, state)
    if not distributed.info_from_env().is_main:
        return
    if live is not None:
        write_live(live, hist)
    state.unlink(missing_ok=True)  # every output written: nothing to resume
    print(f"fashion_train[{arch}]: {summary(hist)} -> {model_out}")


if __name__ == "__main__":
    typer.run(main)
