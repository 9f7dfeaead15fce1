"""Shared glue for stages: one-line error reporting and the torchrun teardown.

Params come from :func:`cvae.params.load_params` (the whole file, validated);
each stage then reads only its own typed section.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

from cvae.errors import CVAEError


def stage_main(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a stage ``main``: a CVAEError or an OSError (disk full, read-only
    folder) becomes one line on stderr and exit 2;
    a torchrun process group the stage joined (``cvae.distributed``) is left."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CVAEError as e:
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        except OSError as e:  # disk full, read-only folder, ... mid-write
            where = f" on {e.filename}" if e.filename else ""
            print(
                f"error: I/O failed{where}: {e.strerror or e}: free space or "
                "fix the folder's permissions, then re-run (outputs are unchanged)",
                file=sys.stderr,
            )
            raise SystemExit(2) from None
        finally:
            if "torch.distributed" in sys.modules:  # a group needs it imported
                from cvae import distributed

                distributed.teardown(distributed.info_from_env())

    return wrapper
