"""Where a run's time goes: wall seconds per stage, summed over seeds (summary.json `stages`), and which stage
raised the process's peak memory (`stages_peak_growth`)."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator


def peak_rss() -> int:
    """The process's peak resident set since it started, in bytes (0 where the platform does not say). On Linux
    the kernel's high-water mark of this program's memory (VmHWM): `getrusage`'s maximum also counts the parent's
    memory at the time it forked this process (the mm copied at fork), which a child of a large process (a test
    worker, a notebook) would report as its own."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import resource
    except ImportError:  # Windows
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # macOS counts bytes, Linux KiB


class Stages:
    """Accumulates wall seconds per named stage; nested stages count in their own name only, so the
    stages add up to the time they cover. `current` names the stage running now (for progress displays).
    `peak_growth`: bytes by which each stage raised the process's peak resident set (summed over its runs;
    the stage whose figure is large is where the memory of a large table goes)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.peak_growth: dict[str, int] = {}
        self._peaks: list[list[int]] = []  # per open stage: the peak when it began, its nested stages' growth
        self._stack: list[tuple[str, float]] = []
        self.listener = None  # called with a stage's name as it starts (kdx.progress)

    @property
    def current(self) -> str:
        return self._stack[-1][0] if self._stack else ""

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        now = time.perf_counter()
        if self._stack:  # pause the enclosing stage
            outer, since = self._stack[-1]
            self.seconds[outer] = self.seconds.get(outer, 0.0) + now - since
        self._stack.append((name, now))
        if self.listener is not None:
            self.listener(name)
        self._peaks.append([peak_rss(), 0])
        try:
            yield
        finally:
            end = time.perf_counter()
            _, since = self._stack.pop()
            self.seconds[name] = self.seconds.get(name, 0.0) + end - since
            began, nested = self._peaks.pop()
            growth = max(0, peak_rss() - began)
            self.peak_growth[name] = self.peak_growth.get(name, 0) + growth - nested
            if self._peaks:
                self._peaks[-1][1] += growth
            if self._stack:
                self._stack[-1] = (self._stack[-1][0], end)
