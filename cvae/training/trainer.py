"""One explicit training loop for every CVAE (nanoGPT / MAE style).

Guarantees: seeded (same seed, same data -> same weights on CPU), resumable
(a state file after every epoch; a killed run continues from the last complete
epoch and ends with the weights an uninterrupted run would have), a NaN guard
(a non-finite loss stops the run, naming the step, and the last good state is
kept), one line of metrics per epoch for people (the history file keeps them
exact), a bar within each epoch on a terminal.

Data: a ``cvae.data.batches.BatchSource`` (in memory or streamed from shards, the
loop cannot tell) and optionally a ``HeldOut`` split scored each epoch.

Weight average: with ``ema`` set, an exponential moving average of the weights
follows the steps (``cvae.training.averaging``) and the trained model ends with
it; the steps, and the per-epoch validation, use the weights being trained.

Data parallel: launched by ``torchrun``, each rank wraps the model in
DistributedDataParallel and trains on an equal share of every epoch (the
source gives each rank its share). Rank 0 alone writes the state, history and log.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from cvae.core import distributed, numerics
from cvae.core.device import resolve_device
from cvae.core.errors import CVAEError
from cvae.core.files import write_json
from cvae.core.progress import bar, say, step_bar
from cvae.data.batches import BatchSource, HeldOut
from cvae.models import ConditionalVAE
from cvae.models.base import to_float_images
from cvae.params.schema import TrainParams
from cvae.training.averaging import WeightAverage, check_decay
from cvae.training.history import epoch_line
from cvae.training.identity import run_fields
from cvae.training.losses import elbo_loss
from cvae.training.state import load_state, save_state


@contextlib.contextmanager
def interrupt_on_sigterm() -> Iterator[None]:
    """SIGTERM (a scheduler's stop, `kill`) interrupts like Ctrl-C, so both end
    with the same one-line resume hint (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


class Trainer:
    """Fits a ConditionalVAE on the batches of ``data`` (see ``cvae.data.batches``).

    val: an optional held-out split scored each epoch (negative ELBO per image).
    ema: the decay of the weight average the model ends with (None: the last
    step's weights).
    """

    def __init__(
        self,
        model: ConditionalVAE,
        cfg: TrainParams,
        data: BatchSource,
        *,
        state_path: str | os.PathLike,
        history_path: str | os.PathLike | None = None,
        val: HeldOut | None = None,
        run_id: str = "",
        log: Callable[[str], None] = say,
        ema: float | None = None,
    ):
        self.cfg = cfg
        device = resolve_device(cfg.device)
        self.dist = distributed.setup(device)
        self.device = distributed.rank_device(device, self.dist)
        self.model = model.to(self.device)
        self.amp = cfg.amp and self.device.type == "cuda"
        if self.device.type == "cuda":
            # channels_last: the fast layout for convolutions on tensor cores.
            self.model = self.model.to(memory_format=torch.channels_last)
        data.place(self.device)  # e.g. a small uint8 set onto the GPU once
        self.data = data
        self.val = val
        self.state_path = Path(state_path)
        self.history_path = Path(history_path) if history_path else None
        self.run_id = run_id
        # Every rank computes; rank 0 alone speaks and writes.
        self.log = log if self.dist.is_main else (lambda line: None)
        # The module that trains: the DDP wrapper when data parallel (its
        # constructor broadcasts rank 0's weights), the model itself otherwise.
        self.net: torch.nn.Module = self.model
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=ids
            )
        self.opt = numerics.adam(
            self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
        )
        self.average = None
        if ema is not None:
            check_decay(ema, cfg.epochs * data.steps)
            self.average = WeightAverage(self.model, decay=ema)
        self.history: list[dict[str, Any]] = []
        self.start_epoch = 0
        self.saved_epoch = 0  # last epoch whose state this run holds on disk

    # -- state ---------------------------------------------------------------
    def _state(self, epoch: int) -> dict[str, Any]:
        state = {
            "run_id": self.run_id,
            "settings": json.dumps(self._settings()),
            "epoch": epoch,  # completed epochs
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "cpu_rng": torch.get_rng_state(),
            "history": json.dumps(self.history),
        }
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        if self.average is not None:
            state["weight_average"] = self.average.state()
        return state | self._extra_state()

    def _extra_state(self) -> dict[str, Any]:
        """What a subclass trains besides the model and its optimiser (resumed by
        :meth:`_load_extra_state`)."""
        return {}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`_extra_state` from a resume state."""

    def _settings(self) -> dict[str, Any]:
        """The run's settings, flat (train fields, ``model.<field>``), stored in
        the state so that a mismatch can name what changed."""
        model = getattr(self.model, "config", None)
        fields = dataclasses.asdict(model) if dataclasses.is_dataclass(model) else {}
        ema = self.average.decay if self.average is not None else 0.0
        fields = {f"model.{k}": v for k, v in fields.items()} | {"ema": ema}
        return run_fields(self.cfg) | fields

    def try_resume(self) -> bool:
        """Load the state file if it belongs to this run; True when resumed."""
        if not self.state_path.exists():
            return False
        state = load_state(self.state_path)
        if state.get("run_id") != self.run_id:
            old, new = json.loads(state.get("settings", "{}")), self._settings()
            changed = [
                f"{k} {old.get(k)!r} -> {new.get(k)!r}"
                for k in sorted(old.keys() | new.keys())
                if old.get(k) != new.get(k)
            ]
            why = ", ".join(changed) or (
                "same settings, other data" if old else "written by an older version"
            )
            self.log(f"ignoring {self.state_path}: it belongs to another run ({why})")
            return False
        try:
            self.model.load_state_dict(state["model"])
            self.opt.load_state_dict(state["optimizer"])
            if self.average is not None:
                if "weight_average" not in state:
                    raise ValueError("it holds no weight average (ema)")
                self.average.load(state["weight_average"])
            self._load_extra_state(state)
        except (RuntimeError, ValueError, KeyError) as e:
            first = str(e).strip().splitlines()[0]
            raise CVAEError(
                f"resume state {self.state_path} does not fit this model ({first}): "
                "delete it to start over"
            ) from e
        torch.set_rng_state(state["cpu_rng"])
        if "cuda_rng" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        self.history = json.loads(state["history"])
        self.start_epoch = self.saved_epoch = int(state["epoch"])
        self.log(f"resumed from {self.state_path} after epoch {self.start_epoch}")
        return True

    def _non_finite(self, where: str) -> CVAEError:
        """The error for a non-finite loss, saying truthfully what was kept."""
        kept = (
            f"kept the last good state (epoch {self.saved_epoch}) in {self.state_path}"
            if self.saved_epoch
            else "no epoch had finished, so nothing was saved"
        )
        return CVAEError(f"non-finite loss {where}: {kept}; lower lr or check the data")

    # -- loop ----------------------------------------------------------------
    # The per-image terms of a history row, summed over each epoch's steps.
    terms: tuple[str, ...] = ("loss", "recon", "kl")

    def _train_step(
        self, x: torch.Tensor, c: torch.Tensor, epoch: int
    ) -> dict[str, torch.Tensor]:
        """One optimiser step on the batch; its terms (summed over the batch)."""
        terms, _, _ = self._step(x, c)
        self.opt.zero_grad(set_to_none=True)
        (terms["loss"] / len(x)).backward()
        self.opt.step()
        return terms

    def _step(
        self, x: torch.Tensor, c: torch.Tensor, *, train: bool = True
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """The ELBO terms of the batch (summed over it), the decoder's logits
        and the posterior means mu (B, L)."""
        net = self.net if train else self.model
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp):
            logits, mu, logvar = net(x, c)
        terms = elbo_loss(
            logits, x, mu, logvar, beta=self.cfg.beta, recon=self.cfg.recon
        )
        return terms, logits, mu

    def _to_device(
        self, x: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 images -> float in [0, 1] on the device; conditions alongside."""
        x = to_float_images(x.to(self.device, non_blocking=True))
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        return x, c.to(self.device, non_blocking=True)

    @contextlib.contextmanager
    def _epoch_batches(
        self, epoch: int
    ) -> Iterator[Iterator[tuple[torch.Tensor, torch.Tensor]]]:
        """The batches of one epoch, on the device.

        The source is closed as the block ends, finished or interrupted: a
        streamed source stops its loader workers then, in plain view, where a
        Ctrl-C that lands meanwhile interrupts the run. Left to the garbage
        collector, their shutdown would swallow that Ctrl-C, or outlive the run
        and report the workers' exit into the interpreter's own shutdown.
        """
        source = self.data.epoch(epoch)
        try:
            yield (self._to_device(x, c) for x, c in source)
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    @torch.no_grad()
    def evaluate_loss(self) -> dict[str, float]:
        """Negative ELBO per image on the validation set (eval mode)."""
        assert self.val is not None
        self.model.eval()
        sums = {"loss": 0.0, "recon": 0.0, "kl": 0.0}
        n = 0
        size = self.cfg.batch_size * 4
        steps = -(-len(self.val) // size)
        batches = bar(self.val.ordered(size), "validation", total=steps, unit="batch")
        for x, c in batches:
            terms, _, _ = self._step(*self._to_device(x, c), train=False)
            for k in sums:
                sums[k] += terms[k].item()
            n += len(x)
        self.model.train()
        return {f"val_{k}": v / n for k, v in sums.items()}

    def _run_epoch(self, epoch: int, check_every: int) -> None:
        """One epoch: steps, the NaN guard, the history row, the state file."""
        steps, n = self.data.steps, self.data.items  # n: items on all ranks
        sums = torch.zeros(len(self.terms), dtype=torch.float64, device=self.device)
        t0 = time.perf_counter()
        desc = f"epoch {epoch + 1}/{self.cfg.epochs}"
        with (
            self._epoch_batches(epoch) as batches,
            step_bar(steps, desc, quiet=not self.dist.is_main) as steps_bar,
        ):
            for step, (x, c) in zip(steps_bar, batches, strict=False):
                terms = self._train_step(x, c, epoch)
                if self.average is not None:
                    self.average.update(self.model)
                loss = terms["loss"] / len(x)
                sums += torch.stack([terms[k].detach().double() for k in self.terms])
                if step % check_every == 0 or step == steps - 1:
                    # summed over ranks, so that every rank stops together
                    total = distributed.all_sum(loss.detach().clone(), self.dist)
                    value = total.item()
                    if not math.isfinite(value):
                        raise self._non_finite(
                            f"({value}) at epoch {epoch + 1} step {step + 1}"
                        )
                    loss_text = f"{value / self.dist.world_size:.2f}"
                    # shown at the bar's next refresh (at most once a second)
                    steps_bar.set_postfix(loss=loss_text, refresh=False)
        totals = distributed.all_sum(sums, self.dist).tolist()
        if not all(math.isfinite(v) for v in totals):
            raise self._non_finite(f"in epoch {epoch + 1}")
        secs = time.perf_counter() - t0
        row: dict[str, Any] = {"epoch": epoch + 1}
        row |= {k: total / n for k, total in zip(self.terms, totals, strict=True)}
        if self.dist.enabled:
            row["world_size"] = self.dist.world_size
        if self.val is not None and self.dist.is_main:
            # the gradients are not needed until the next step zeroes them: free
            # them for the held-out pass (at 256 px its batch is the peak)
            self.opt.zero_grad(set_to_none=True)
            row.update(self.evaluate_loss())
        self.history.append(row)  # no timings: the same run, the same bytes
        self.log(epoch_line(row, epochs=self.cfg.epochs, seconds=secs, items=n))
        if self.dist.is_main:
            save_state(self.state_path, self._state(epoch + 1))
        self.saved_epoch = epoch + 1  # on disk now, whatever comes next
        if self.dist.is_main and self.history_path is not None:
            write_json(self.history_path, self.history)

    def fit(self) -> list[dict[str, Any]]:
        """Train up to ``cfg.epochs`` epochs (from the resumed one); return history.

        Rank r seeds its reparameterisation noise with ``seed + r``.
        """
        torch.manual_seed(self.cfg.seed + self.dist.rank)
        self.try_resume()
        # Loss check every step on CPU (free); every 50 on CUDA (a host sync).
        check_every = 1 if self.device.type == "cpu" else 50
        self.net.train()
        with interrupt_on_sigterm():
            try:
                for epoch in range(self.start_epoch, self.cfg.epochs):
                    self._run_epoch(epoch, check_every)
            except KeyboardInterrupt:
                kept = (
                    f"the state after epoch {self.saved_epoch} is kept in "
                    f"{self.state_path}: re-run the same command to resume"
                    if self.saved_epoch
                    else "no epoch had finished, so there is nothing to resume"
                )
                if self.dist.is_main:
                    print(
                        f"interrupted in epoch {self.saved_epoch + 1}: {kept}",
                        file=sys.stderr,
                    )
                raise SystemExit(130) from None
        if self.history_path is not None and self.dist.is_main:
            write_json(self.history_path, self.history)
        if self.average is not None:  # the model ends with the average
            self.average.copy_to(self.model)
        distributed.barrier(self.dist)  # no rank leaves before rank 0 has written
        self.model.eval()
        return self.history
