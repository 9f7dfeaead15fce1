"""Atomic outputs: a block of writes lands together or not at all, a full disk is
found before the work or reported in one line, and nothing half-written stays."""

from __future__ import annotations

import errno
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cvae.core.errors import CVAEError
from cvae.core.files import (
    atomic_dir,
    atomic_path,
    check_space,
    check_writable,
    is_disk_full,
    output_set,
    write_json,
)


def _tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden temporaries included) -> bytes."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _old_outputs(tmp_path: Path) -> dict[str, bytes]:
    write_json(tmp_path / "metrics.json", {"mse": 1.0})
    (tmp_path / "model.bin").write_bytes(b"old model")
    (tmp_path / "grids").mkdir()
    (tmp_path / "grids" / "a.png").write_bytes(b"old grid")
    return _tree(tmp_path)


def _write_new(tmp_path: Path, fail_after: int | None) -> None:
    """Write the three outputs anew; raise after ``fail_after`` of them."""
    steps = 0

    def step() -> None:
        nonlocal steps
        steps += 1
        if fail_after is not None and steps > fail_after:
            raise KeyboardInterrupt  # the hardest case: Ctrl-C, a BaseException

    with atomic_path(tmp_path / "model.bin") as tmp:
        tmp.write_bytes(b"new model")
    step()
    write_json(tmp_path / "metrics.json", {"mse": 0.5})
    step()
    with atomic_dir(tmp_path / "grids") as tmp:
        (tmp / "b.png").write_bytes(b"new grid")
    step()


@pytest.mark.parametrize("fail_after", [0, 1, 2])
def test_a_failed_block_leaves_every_earlier_output_byte_identical(
    tmp_path: Path, fail_after: int
) -> None:
    before = _old_outputs(tmp_path)
    with pytest.raises(KeyboardInterrupt), output_set():
        _write_new(tmp_path, fail_after)
    assert _tree(tmp_path) == before  # no temporaries left either


def test_a_successful_block_swaps_in_all_outputs(tmp_path: Path) -> None:
    _old_outputs(tmp_path)
    with output_set():
        _write_new(tmp_path, None)
        # inside the block the old outputs are still in place
        assert (tmp_path / "model.bin").read_bytes() == b"old model"
    assert _tree(tmp_path) == {
        "grids/b.png": b"new grid",
        "metrics.json": b'{\n  "mse": 0.5\n}\n',
        "model.bin": b"new model",
    }


def test_a_second_write_of_one_output_in_a_block_wins(tmp_path: Path) -> None:
    with output_set():
        for epoch in range(3):
            write_json(tmp_path / "history.json", [epoch])
    assert _tree(tmp_path) == {"history.json": b"[\n  2\n]\n"}


def test_a_resume_state_is_written_at_once_inside_a_block(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), output_set():
        with atomic_path(tmp_path / "state.pt", deferred=False) as tmp:
            tmp.write_bytes(b"epoch 3")
        raise RuntimeError("training died in epoch 4")
    assert _tree(tmp_path) == {"state.pt": b"epoch 3"}


def test_outside_a_block_writes_land_at_once(tmp_path: Path) -> None:
    write_json(tmp_path / "a.json", 1)
    assert (tmp_path / "a.json").read_text() == "1\n"


def test_check_space_needs_room_for_outputs_as_large_as_the_last_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "model.bin").write_bytes(b"x" * (1 << 20))
    free = 8 << 20  # 8 MiB: less than the 1 MiB estimate plus the 16 MiB slack
    monkeypatch.setattr("shutil.disk_usage", lambda _: _Usage(free))
    with pytest.raises(CVAEError, match=r"not enough free space .* free space, then"):
        check_space(tmp_path / "model.bin", None)
    check_space(tmp_path / "absent.bin")  # no earlier output: nothing to estimate


class _Usage:
    def __init__(self, free: int) -> None:
        self.free = free


def test_is_disk_full_knows_how_torch_and_safetensors_say_it() -> None:
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full(
        RuntimeError(
            "[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598"
        )
    )
    assert is_disk_full(
        Exception(
            "Error while serializing: I/O error: No space left on device (os error 28)"
        )
    )
    assert not is_disk_full(OSError(errno.ENOENT, "No such file"))
    assert not is_disk_full(RuntimeError("size mismatch"))
    assert not is_disk_full(KeyboardInterrupt())


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (root only; skipped where mounting is not allowed)."""
    where = tmp_path / "tiny"
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)],
        capture_output=True,
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_real_full_disk_keeps_the_old_output_and_leaves_no_temporary(
    tiny_disk: Path,
) -> None:
    torch = pytest.importorskip("torch")
    from cvae.training.state import save_state

    (tiny_disk / "model.bin").write_bytes(b"old")
    with pytest.raises(Exception) as raised, output_set():  # noqa: PT011
        with atomic_path(tiny_disk / "model.bin") as tmp:
            torch.save({"w": torch.zeros(1 << 19)}, tmp)  # 2 MiB into 1 MiB
    assert is_disk_full(raised.value)
    with pytest.raises(Exception) as raised:  # noqa: PT011
        save_state(tiny_disk / "state.pt", {"w": torch.zeros(1 << 19)})
    assert is_disk_full(raised.value)
    assert _tree(tiny_disk) == {"model.bin": b"old"}


def test_check_writable_refuses_a_disk_without_room_for_the_last_outputs(
    tiny_disk: Path,
) -> None:
    (tiny_disk / "model.bin").write_bytes(b"x" * (600 << 10))
    with pytest.raises(CVAEError, match="not enough free space"):
        check_writable(tiny_disk / "model.bin")
