"""Shared glue for stages: params with pinned CPU numerics (``load``), one-line
errors and the torchrun teardown (``stage_main``), DVCLive curves (``write_live``).

Params come from :func:`cvae.params.loading.load_params` (the whole file, validated);
each stage then reads only its own typed section.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from cvae.core.errors import RUNTIME_EXIT, CVAEError, exit_code
from cvae.core.files import atomic_dir, is_disk_full, output_set
from cvae.params.loading import load_params
from cvae.params.schema import Params

ELBO_TERMS = ("loss", "recon", "kl")  # negative ELBO per image, its two terms

# Errors the user fixes with space or permissions (others are reported as they are).
STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS}

# The typer option every stage with a metrics file takes beside it.
Info = Annotated[Path | None, typer.Option(help="info JSON: the non-numeric facts")]


def load(path: Path) -> Params:
    """The validated params of a stage, with torch's CPU numerics set.

    - threads = ``cpu_threads`` for torch, OpenMP and OpenBLAS: reductions are
      split by thread, so the count is part of the result (and a param DVC
      tracks), not a property of the machine;
    - denormal floats flushed to zero (FTZ/DAZ, the same on every x86-64 CPU):
      after a few epochs the CVAE weights and Adam states hold denormals, which
      the CPU handles in microcode, several times slower per step.
    """
    import torch

    from cvae.core.numerics import set_threads

    p = load_params(path)
    torch.set_flush_denormal(True)  # before the thread pool starts: inherited
    set_threads(p.cpu_threads)
    return p


def _collective_failed(e: BaseException) -> bool:
    """Whether ``e`` is torch.distributed's report of a failed collective (a
    peer rank died or timed out), not a bug of this rank."""
    if "torch.distributed" not in sys.modules:
        return False
    import torch.distributed as tdist

    return isinstance(e, tdist.DistError)


def stage_main(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a stage ``main``: its outputs are one :func:`cvae.core.files.output_set`
    (all replaced when it succeeds, none touched when it fails: DVC keeps them,
    as dvc.yaml declares them ``persist``); a CVAEError or an OSError (disk full,
    read-only folder) becomes one line on stderr and exit 2 (bad params) or 1
    (anything else, :func:`cvae.core.errors.exit_code`); a torchrun process group
    the stage joined (``cvae.core.distributed``) is left."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with output_set():
                return fn(*args, **kwargs)
        except CVAEError as e:
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(exit_code(e)) from None
        except OSError as e:  # disk full, read-only folder, ... mid-write
            where = f" on {e.filename}" if e.filename else ""
            fix = (
                ": free space or fix the folder's permissions, then re-run"
                if e.errno in STORAGE_ERRNOS
                else ""
            )
            print(
                f"error: I/O failed{where}: {e.strerror or e}{fix}; "
                "the previous outputs are kept",
                file=sys.stderr,
            )
            raise SystemExit(RUNTIME_EXIT) from None
        except Exception as e:
            if is_disk_full(e):  # torch's writers report ENOSPC as RuntimeError
                print(
                    "error: the disk filled up while writing outputs: free space, "
                    "then re-run; the previous outputs are kept",
                    file=sys.stderr,
                )
                raise SystemExit(RUNTIME_EXIT) from None
            if not _collective_failed(e):
                raise
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            print(
                f"error: rank {os.environ.get('RANK', '?')}: a torchrun collective "
                f"failed ({type(e).__name__}: {first[:160]}): another rank most "
                "likely stopped first; its error line above says why",
                file=sys.stderr,
            )
            raise SystemExit(RUNTIME_EXIT) from None
        finally:
            if "torch.distributed" in sys.modules:  # a group needs it imported
                from cvae.core import distributed

                distributed.teardown(distributed.info_from_env())

    return wrapper


@contextlib.contextmanager
def working_dir(path: str) -> Iterator[None]:
    """Run a block with ``path`` as the working directory (restored after)."""
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def write_live(folder: Path, history: list[dict[str, Any]]) -> None:
    """A training history as DVCLive files: ``train/<term>`` and ``val/<term>``
    per epoch (``plots/metrics/*.tsv``) and the last epoch (``metrics.json``,
    with ``step``), for `dvc plots diff` and `dvc exp show`.

    Written from the complete history once training ends, into a fresh folder,
    so a resumed run gives the same files as an uninterrupted one.
    """
    from dvclive import Live

    # DVCLive is used as the writer of its file format only: `dvc repro` records
    # the files itself (dvc.yaml declares them). Outside any repository (cwd in
    # the temp folder) it neither looks up git (which fails in a repository
    # without commits) nor tries to save an experiment.
    folder = Path(folder).absolute()  # the block below runs in another cwd
    with atomic_dir(folder) as tmp, working_dir(tempfile.gettempdir()):
        with Live(str(tmp), dvcyaml=None, save_dvc_exp=False, report=None) as live:
            for row in history:
                live.step = row["epoch"]
                for term in ELBO_TERMS:
                    live.log_metric(f"train/{term}", row[term], plot=True)
                    if f"val_{term}" in row:
                        live.log_metric(f"val/{term}", row[f"val_{term}"], plot=True)
                for term in row:  # training-only terms (the adversarial ones)
                    if term not in {"epoch", "world_size", *ELBO_TERMS} and not (
                        term.startswith("val_")
                    ):
                        live.log_metric(f"train/{term}", row[term], plot=True)
