"""Where a run's time goes: wall seconds per stage, summed over seeds (summary.json `stages`)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator


class Stages:
    """Accumulates wall seconds per named stage; nested stages count in their own name only, so the
    stages add up to the time they cover. `current` names the stage running now (for progress displays)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
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
        try:
            yield
        finally:
            end = time.perf_counter()
            _, since = self._stack.pop()
            self.seconds[name] = self.seconds.get(name, 0.0) + end - since
            if self._stack:
                self._stack[-1] = (self._stack[-1][0], end)
