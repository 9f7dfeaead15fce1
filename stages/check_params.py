"""Stage check_params: the whole params.yaml against the schema, before any work.

This stage runs first (every other stage depends on its output) and fails within
seconds on a wrong value: one line naming the key, the value and what is allowed,
before any long stage starts. Every stage checks the whole file again before its
own work (``stages._common.load``), for ``dvc repro -s``; its outputs are
``persist``ed and replaced only on success, so a refusal there keeps them too.

Its output is a fixed text, the same bytes for every valid params file, so it
never invalidates a stage whose own params did not change; it is `persist`ed,
so a failed check leaves it (and everything else) in place. Input paths are
checked by the stages that read them (DVC refuses a stage whose dep is missing).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cvae.core.files import atomic_open, check_writable
from cvae.params.loading import load_params
from stages._common import stage_main

STAMP = "params.yaml matches the cvae.params schema\n"


@stage_main
def main(
    *,
    out: Annotated[Path, typer.Option(help="stamp file written when params are valid")],
    params: Annotated[Path, typer.Option(help="params file")] = Path("params.yaml"),
) -> None:
    """Validate params.yaml; write the stamp only when its bytes would change."""
    check_writable(out)  # before any work
    load_params(params)  # raises ParamsError: one line, exit 2
    if not (out.is_file() and out.read_bytes() == STAMP.encode()):
        with atomic_open(out) as f:
            f.write(STAMP)
    print(f"check_params: {params} is valid")


if __name__ == "__main__":
    typer.run(main)
