"""Atomic file output: nothing half-written is ever left under a final name.

Every writer goes to a temporary name in the destination folder, is flushed to
disk and then renamed with ``os.replace`` (atomic on POSIX). A crash leaves the
previous output (or nothing) in place, plus at worst a ``.tmp-*`` file, which
the next write of the same output removes.

Inside :func:`output_set` the renames wait for the end of the block: a run that
fails anywhere (an error, Ctrl-C, a full disk) leaves every earlier output as it
was, and a run that succeeds swaps all of its outputs in together.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import glob
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from cvae.core.errors import CVAEError

_UMASK = os.umask(0)
os.umask(_UMASK)

# final path -> its complete temporary, while an output_set block is open
_PENDING: contextvars.ContextVar[dict[Path, Path] | None] = contextvars.ContextVar(
    "cvae_pending_outputs", default=None
)
SPACE_MARGIN = 1.1  # the estimate of a run's outputs, with a tenth to spare
SPACE_SLACK = 16 << 20  # and 16 MiB for what no estimate sees (logs, metadata)


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes, read in 1 MiB chunks."""
    import hashlib

    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def existing_folder(path: str | os.PathLike) -> Path:
    """The nearest folder above ``path`` that exists (where it would be created)."""
    folder = Path(path).absolute().parent
    while not folder.exists():
        folder = folder.parent
    return folder


def check_writable(*paths: str | os.PathLike | None) -> None:
    """Each output can be created: its nearest existing ancestor folder takes a
    new file (probed, then removed; nothing is left behind), and there is room
    for outputs as large as the last run's (:func:`check_space`).

    Stages call it before their long work, so an unwritable output is one line
    at the start, not a traceback after an hour.
    """
    for p in paths:
        if p is None:  # an optional output not asked for
            continue
        folder = existing_folder(p)
        try:
            if not folder.is_dir():
                raise NotADirectoryError(20, "a file stands where a folder is needed")
            fd, probe = tempfile.mkstemp(prefix=".tmp-probe-", dir=folder)
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            raise CVAEError(
                f"cannot write {p} ({e.strerror or type(e).__name__} in {folder}): "
                "pick a writable folder, or fix its permissions or free space"
            ) from None
    check_space(*paths)


def tree_size(path: str | os.PathLike) -> int:
    """Bytes of a file, or of every file under a folder (0 when absent)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    if not path.is_dir():
        return 0
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def check_space(*paths: str | os.PathLike | None) -> None:
    """Each file system has room for new outputs as large as the ones already
    there (the last run's), so a full disk is one line before the work starts.

    New outputs are written beside the old ones before they replace them, so the
    room needed is their whole size. Outputs not there yet are not estimated: a
    full disk during their run still fails with one line, old outputs intact.
    """
    need: dict[int, tuple[Path, int]] = {}
    for p in paths:
        if p is None:
            continue
        folder = existing_folder(p)
        dev = folder.stat().st_dev
        where, size = need.get(dev, (folder, 0))
        need[dev] = (where, size + tree_size(p))
    for where, size in need.values():
        if size == 0:
            continue
        free = shutil.disk_usage(where).free
        wanted = int(size * SPACE_MARGIN) + SPACE_SLACK
        if free < wanted:
            raise CVAEError(
                f"not enough free space for this run's outputs in {where}: "
                f"{free / 2**20:,.0f} MiB free, the last run's outputs took "
                f"{size / 2**20:,.0f} MiB (about {wanted / 2**20:,.0f} MiB needed "
                "while old and new both exist): free space, then re-run"
            )


def remove_stale(path: Path) -> None:
    """Temporaries of ``path`` left by an earlier run that was killed."""
    name = glob.escape(path.name)
    for old in path.parent.glob(f".tmp-{name}.*"):
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
    for old in path.parent.glob(f".old-{name}.*"):
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, deferred: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success
    (inside an :func:`output_set`, when that block succeeds, unless
    ``deferred=False``: a resume state must be on disk at once).

    Use for writers that want a file name (PIL, safetensors, pyarrow).
    """
    path = Path(path).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}.", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs are 0644-ish
    pending = _PENDING.get() if deferred else None
    try:
        yield tmp_path
        with open(tmp_path, "rb") as f:
            os.fsync(f.fileno())
        if pending is None:
            os.replace(tmp_path, path)
        else:
            pending[path] = tmp_path
    finally:
        if tmp_path.exists() and (pending is None or pending.get(path) != tmp_path):
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file for writing; rename it onto ``path`` on success."""
    with atomic_path(path) as tmp, open(tmp, mode) as f:
        yield f
        f.flush()


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")


def split_record(record: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(numbers, the rest) of a nested record, keys and nesting kept.

    The numbers (int or float, never bool) are what `dvc metrics diff` and
    `dvc exp show` compare; strings, flags, lists and nulls (FID off, notes,
    model names, file lists) are facts for people, not metrics.
    """
    numbers: dict[str, Any] = {}
    rest: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, dict):
            n, r = split_record(value)
            if n:
                numbers[key] = n
            if r:
                rest[key] = r
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            numbers[key] = value
        else:
            rest[key] = value
    return numbers, rest


def write_record(
    metrics: str | os.PathLike,
    info: str | os.PathLike | None,
    record: dict,
    *,
    params: dict[str, Any] | None = None,
) -> None:
    """The numbers of ``record`` to ``metrics`` (a DVC metrics file), the rest to
    ``info`` (an output beside it; skipped when None), both atomically.

    ``params``: the params the outputs came from ({dotted key: value}), kept whole
    in ``info`` under "params" (numbers among them are settings, not metrics).
    """
    numbers, rest = split_record(record)
    write_json(metrics, numbers)
    if info is not None:
        write_info(info, rest | ({"params": params} if params is not None else {}))


def write_info(path: str | os.PathLike, facts: dict[str, Any]) -> None:
    """An info file: ``facts`` and, under "machine", the CPU, torch and numerics
    settings the outputs were computed with
    (:func:`cvae.core.numerics.machine_record`)."""
    from cvae.core.numerics import machine_record

    write_json(path, facts | {"machine": machine_record()})


def _swap_in(tmp: Path, path: Path) -> None:
    """Put the complete ``tmp`` (file or folder) at ``path``, replacing it."""
    if tmp.is_dir():
        old = None
        if path.exists():
            old = path.parent / f".old-{path.name}.{os.getpid()}"
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)


def _discard(tmp: Path) -> None:
    if tmp.is_dir():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary folder; swap it in for ``path`` on success
    (inside an :func:`output_set`, when that block succeeds).

    The old folder (if any) stays untouched until the new one is complete.
    """
    path = Path(path).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{path.name}.", dir=path.parent))
    pending = _PENDING.get()
    try:
        yield tmp
        if pending is None:
            _swap_in(tmp, path)
        else:
            pending[path] = tmp
    finally:
        if tmp.exists() and (pending is None or pending.get(path) != tmp):
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def output_set() -> Iterator[None]:
    """Hold back every atomic write made in the block until it ends: on success
    all outputs are swapped in (renames only, no copying, so no new room is
    needed); on any failure, Ctrl-C included, the temporaries are removed and
    the earlier outputs are left exactly as they were.

    A second write of the same output within the block replaces the first.
    Writers that read an output back within the block see its earlier version:
    the stages never do.
    """
    if _PENDING.get() is not None:  # nested: the outer block commits
        yield
        return
    pending: dict[Path, Path] = {}
    token = _PENDING.set(pending)
    try:
        yield
    except BaseException:
        for tmp in pending.values():
            _discard(tmp)
        raise
    finally:
        _PENDING.reset(token)
    for path, tmp in pending.items():
        _swap_in(tmp, path)


def is_disk_full(error: BaseException) -> bool:
    """Whether ``error`` is a write refused for space, also where a library
    reports it as its own exception: torch.save's zip writer raises RuntimeError
    "unexpected pos ...", safetensors a SafetensorError naming os error 28."""
    if isinstance(error, OSError):
        return error.errno in (errno.ENOSPC, errno.EDQUOT)
    text = str(error)
    return isinstance(error, Exception) and (
        "No space left on device" in text
        or "Disk quota exceeded" in text
        or (isinstance(error, RuntimeError) and "unexpected pos" in text)
    )


def read_parquet(path: str | os.PathLike, *, what: str, stage: str) -> Any:
    """A parquet file as a pyarrow Table, or one line naming the stage to re-run."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise CVAEError(f"{what} {path} not found: run the {stage} stage first")
    try:
        return pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CVAEError(
            f"{what} {path} is not a readable parquet file ({first}): "
            f"re-run the {stage} stage"
        ) from None
