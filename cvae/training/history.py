"""A training history as text for people: one line per epoch, a run in a few
words. The history file keeps every digit; these lines round for reading."""

from __future__ import annotations

from typing import Any

from cvae.core.errors import plural
from cvae.core.progress import number


def _terms(row: dict[str, Any], prefix: str = "") -> str:
    return "  ".join(f"{k} {number(row[prefix + k])}" for k in ("loss", "recon", "kl"))


def epoch_line(row: dict[str, Any], *, epochs: int, seconds: float, items: int) -> str:
    """One history row for people: ``epoch 3/25  loss 244.79  recon 232.04  kl
    12.75  | val loss 244.88  recon 232.10  kl 12.78  | 163.2 s, 261 img/s``."""
    extra = "".join(  # terms a training adds to the ELBO's (e.g. adversarial ones)
        f"  {k} {number(v)}"
        for k, v in row.items()
        if k not in ("epoch", "world_size", "loss", "recon", "kl")
        and not k.startswith("val_")
    )
    parts = [f"epoch {row['epoch']}/{epochs}  {_terms(row)}{extra}"]
    if "val_loss" in row:
        parts.append(f"val {_terms(row, 'val_')}")
    speed = f"{seconds:.1f} s, {items / max(seconds, 1e-9):.0f} img/s"
    if "world_size" in row:
        speed += f" on {row['world_size']} ranks"
    return "  | ".join([*parts, speed])


def summary(history: list[dict[str, Any]]) -> str:
    """A finished run in a few words: ``25 epochs, val loss 231.20 (recon
    219.03, kl 12.17)`` (the last epoch; its training loss without a val split)."""
    if not history:
        return plural(0, "epoch")
    last = history[-1]
    pre = "val_" if "val_loss" in last else ""
    return (
        f"{plural(len(history), 'epoch')}, {pre.replace('_', ' ')}loss "
        f"{number(last[pre + 'loss'])} (recon {number(last[pre + 'recon'])}, "
        f"kl {number(last[pre + 'kl'])})"
    )
