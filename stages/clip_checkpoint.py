"""Stage clip_checkpoint: the identity of the CLIP weights ``embed.pretrained``
names, by content (sha256), so new weights at the same path re-run coco_embed.

DVC tracks a dependency by path; a param holding a path changes only when the
path does. This stage runs on every `dvc repro` (``always_changed``), hashes the
file (about a second for ViT-B-32) and rewrites its output only when the
identity changed, so coco_embed and everything after it re-run exactly when the
weights do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cvae.clip.weights import checkpoint_identity
from cvae.core.files import check_writable, write_json
from stages._common import load, stage_main


@stage_main
def main(
    *,
    out: Annotated[Path, typer.Option(help="JSON: model, pretrained, sha256")],
    params: Annotated[Path, typer.Option(help="params file")] = Path("params.yaml"),
) -> None:
    """Write the CLIP weights' identity; leave the file untouched if unchanged."""
    embed = load(params).embed
    check_writable(out)
    ident = checkpoint_identity(embed.model, embed.pretrained)
    try:
        old = json.loads(out.read_text()) if out.is_file() else None
    except ValueError:  # damaged: rewrite it
        old = None
    if old != ident:
        write_json(out, ident)
    sha = ident["sha256"][:12] if ident["sha256"] else "none"
    print(f"clip_checkpoint: {embed.model}/{embed.pretrained} (sha256 {sha})")


if __name__ == "__main__":
    typer.run(main)
