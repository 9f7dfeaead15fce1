"""Progress for people: a bar on a terminal only, numbers rounded for reading,
counts in the singular when there is one."""

from __future__ import annotations

import io

import pytest

from cvae.core.errors import plural
from cvae.core.progress import bar, number, step_bar


class Terminal(io.StringIO):
    """stderr as a terminal shows it (a TTY)."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("tty", [True, False])
def test_a_bar_shows_on_a_terminal_and_piped_writes_nothing(monkeypatch, tty) -> None:
    stderr = Terminal() if tty else io.StringIO()
    monkeypatch.setattr("sys.stderr", stderr)
    assert list(step_bar(3, "epoch 2/25")) == [0, 1, 2]
    assert list(bar(iter("ab"), "validation", total=2, unit="batch")) == ["a", "b"]
    if tty:
        assert "epoch 2/25" in stderr.getvalue()
        assert "validation" in stderr.getvalue()
    else:
        assert stderr.getvalue() == ""


def test_quiet_hides_the_bar_on_a_terminal(monkeypatch) -> None:
    stderr = Terminal()
    monkeypatch.setattr("sys.stderr", stderr)
    assert list(step_bar(2, "epoch 1/1", quiet=True)) == [0, 1]
    assert stderr.getvalue() == ""


def test_numbers_for_reading() -> None:
    assert number(244.7912) == "244.79"
    assert number(12.754) == "12.75"
    assert number(1.0) == "1.00"
    assert number(-3.14159) == "-3.14"
    assert number(0.8512345) == "0.8512"
    assert number(0.0003141592) == "0.0003142"
    assert number(0.0) == "0"


def test_one_is_singular() -> None:
    assert plural(1, "image") == "1 image"
    assert plural(0, "image") == "0 images"
    assert plural(2, "epoch") == "2 epochs"
    assert plural(1, "match", "matches") == "1 match"
    assert plural(3, "match", "matches") == "3 matches"
