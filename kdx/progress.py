"""What a run is doing now: seed k of n, stage, epoch, ETA.

On a terminal a one-line rich display, redrawn by rich's own thread 4 times a second (the work only sets
fields, so it costs the run nothing measurable: benchmarks/bench_stages.py); elsewhere (a pipe, a
file, CI) nothing but the per-seed log line the runner writes anyway; nothing at all when kdx's log is
silenced (hydra/job_logging=disabled, or logging above INFO). Training loops report epochs through
`epoch()`, which does nothing unless a display is active.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator

_active: Display | None = None


def epoch(done: int, total: int) -> None:
    """Called by training loops after each epoch (no-op without an active display)."""
    if _active is not None:
        _active.epoch(done, total)


def wanted(stream=None) -> bool:
    """A live display only on a terminal, outside CI, with kdx's INFO log on."""
    stream = stream or sys.stderr
    if os.environ.get("CI") or os.environ.get("KDX_PROGRESS") == "0":
        return False
    if os.environ.get("KDX_PROGRESS") == "1":
        return True
    return stream.isatty() and logging.getLogger("kdx").isEnabledFor(logging.INFO)


class Display:
    def __init__(self, seeds: int, label: str, console=None):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("seeds"), TimeRemainingColumn(), TextColumn("{task.fields[doing]}"),
                                 transient=True, refresh_per_second=4, console=console)
        self.task = self.progress.add_task(label, total=seeds, doing="")
        self.stage = ""

    def set_stage(self, name: str) -> None:
        self.stage = name
        self.progress.update(self.task, doing=name)

    def epoch(self, done: int, total: int) -> None:
        self.progress.update(self.task, doing=f"{self.stage}, epoch {done}/{total}")

    def seed_done(self) -> None:
        self.progress.advance(self.task)


@contextlib.contextmanager
def display(seeds: int, label: str, stages=None, console=None) -> Iterator[Display | None]:
    """A live display for the duration of a run when `wanted()`; `stages` (kdx.timing.Stages) tells it the
    stage as the run enters each; `console`: where to draw (rich's default: the terminal)."""
    global _active
    if not wanted():
        yield None
        return
    shown = Display(seeds, label, console)
    if stages is not None:
        stages.listener = shown.set_stage
    _active = shown
    try:
        with shown.progress:
            yield shown
    finally:
        _active = None
        if stages is not None:
            stages.listener = None
