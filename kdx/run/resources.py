"""The cores a job may use: threads per job from the idle cores and the jobs running at once, and the order
parallel jobs take the seeds in."""

from __future__ import annotations

import logging
import os
import time

from kdx.errors import ConfigError

log = logging.getLogger("kdx")


def resolve_threads(setting, parallel_jobs: int = 1) -> int:
    """torch/BLAS threads for this job: an explicit number, or (auto) the cores it may use divided among the
    jobs that run at the same time, and never more than the cores other processes leave idle: threads that
    wait for a core at every parallel region collapse throughput (measured: benchmarks/bench_load.py)."""
    if setting not in (None, "auto"):
        if isinstance(setting, bool) or not isinstance(setting, int) or setting < 1:
            raise ConfigError(f"threads must be a positive integer or auto, got {setting!r}")
        return setting
    return max(1, min(available_cores() // max(1, parallel_jobs), recently_idle_cores()))


IDLE_LOOK_EVERY = 10.0  # seconds: how stale a look at the machine's idle cores may be


_IDLE_SEEN: list[tuple[float, int]] = []  # this process's last look: (time.monotonic(), idle cores)


def recently_idle_cores() -> int:
    """`idle_cores()`, looked at again only when the last look is over IDLE_LOOK_EVERY seconds old: a look
    sleeps 0.1 s, and the 30 jobs of a sweep in one process start within seconds of each other."""
    now = time.monotonic()
    if not _IDLE_SEEN or now - _IDLE_SEEN[-1][0] > IDLE_LOOK_EVERY:
        _IDLE_SEEN[:] = [(now, idle_cores())]
    return _IDLE_SEEN[-1][1]


def idle_cores(interval: float = 0.1) -> int:
    """Cores the machine leaves idle now (Linux /proc/stat over `interval` seconds), at least 1; where that
    cannot be read, the cores this process may use."""
    def snapshot() -> tuple[int, int]:
        with open("/proc/stat") as fh:
            fields = [int(v) for v in fh.readline().split()[1:9]]
        return fields[3] + fields[4], sum(fields)  # idle + iowait, all

    try:
        idle0, total0 = snapshot()
        time.sleep(interval)
        idle1, total1 = snapshot()
    except (OSError, ValueError, IndexError):
        return available_cores()
    if total1 <= total0:
        return available_cores()
    return max(1, round((idle1 - idle0) / (total1 - total0) * (os.cpu_count() or 1)))


def available_cores() -> int:
    """The cores this process may use: its CPU affinity (a container's or taskset's limit), and within a
    Slurm job its allocation (SLURM_CPUS_PER_TASK; Slurm without cgroups does not pin the process)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    allocated = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if allocated.isdigit() and int(allocated) > 0:
        cores = min(cores, int(allocated))
    return max(1, cores)


def seed_order(seeds: list[int], parallel_jobs: int, job_index: int) -> list[int]:
    """The order this job works through its seeds. Parallel jobs of a sweep start at different seeds, so
    they train different (cached, shared) teachers at once instead of waiting on each other's lock."""
    if parallel_jobs <= 1:
        return list(seeds)
    start = job_index % len(seeds)
    return list(seeds[start:]) + list(seeds[:start])

