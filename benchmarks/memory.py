"""Peak resident memory of a whole process tree (a stage, its DataLoader
workers, torchrun ranks), sampled while it runs.

``ru_maxrss`` only knows one process; a worker's pages are not its parent's.
A sampler thread sums the memory of the process and all its descendants every
``interval`` seconds and keeps the largest sum: a lower bound of the true peak
that misses only spikes shorter than the interval. The sum is of PSS
(proportional set size: a page shared by k processes counts 1/k in each), so
forked DataLoader workers sharing their parent's model pages are not counted
twice, as summed RSS would; RSS where PSS cannot be read.
"""

from __future__ import annotations

import threading

import psutil


def _resident(p: psutil.Process) -> int:
    try:
        return p.memory_full_info().pss
    except (AttributeError, psutil.AccessDenied):
        return p.memory_info().rss


def tree_rss(pid: int) -> int:
    """Bytes resident in ``pid`` and all its live descendants now (PSS)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in procs:
        try:
            total += _resident(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


class TreePeak:
    """``with TreePeak(pid) as peak: ...`` then ``peak.mib``."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid, self.interval = pid, interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self.pid))
            self._stop.wait(self.interval)

    def __enter__(self) -> TreePeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def mib(self) -> float:
        return self.peak / 2**20
