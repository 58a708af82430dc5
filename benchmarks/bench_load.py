"""One seed of the default run alone, then next to 3 CPU-bound processes: the slowdown against what its
CPU share predicts.

Prediction: alone the run keeps `c` cores busy on average (CPU seconds / wall seconds); next to `n` busy
processes on `k` cores a fair scheduler gives it about k / (n + 1) cores (at most `c`), so its wall time
should grow by c / min(c, k / (n + 1)). The goal is a slowdown of at most 1.5× that prediction; thread
counts above the idle cores and spinning OpenMP threads made it 30-60× in kdx 0.1 (issue #15).
KDX_BENCH_BASELINE=DIR runs the same with the kdx source in DIR too (see bench_grid.py), side by side.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.baseline import process_settings

BUSY = 3
OVERRIDES = ("seeds=[0]",)


def _seed(tmp: Path, name: str, source: str | None = None) -> tuple[float, float]:
    """Wall and CPU seconds of one cold seed of the default run in a fresh process."""
    env, cwd = process_settings({**os.environ, "KDX_CACHE": str(tmp / f"cache-{name}"), "KDX_PROGRESS": "0"},
                                source)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "kdx", "run", *OVERRIDES, f"hydra.run.dir={tmp / name}"],
                         capture_output=True, text=True, env=env, cwd=cwd)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{res.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> dict:
    cores = len(os.sched_getaffinity(0))
    variants = {"now": None}
    if os.environ.get("KDX_BENCH_BASELINE"):
        variants["baseline"] = os.environ["KDX_BENCH_BASELINE"]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        alone = {name: _seed(Path(tmp), f"alone-{name}", source) for name, source in variants.items()}
        busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(BUSY)]
        try:
            time.sleep(1.0)
            loaded = {name: _seed(Path(tmp), f"loaded-{name}", source)[0] for name, source in variants.items()}
        finally:
            for proc in busy:
                proc.kill()
                proc.wait()
    for name in variants:
        wall, cpu = alone[name]
        used = cpu / wall
        predicted = used / min(used, cores / (BUSY + 1))
        slowdown = loaded[name] / wall
        print(f"  {name}: one seed alone {wall:.1f} s wall, {cpu:.1f} s CPU ({used:.2f} cores busy on average); next "
              f"to {BUSY} busy processes on {cores} cores {loaded[name]:.1f} s: slowdown x{slowdown:.2f}, the CPU "
              f"share predicts x{predicted:.2f}, ratio {slowdown / predicted:.2f} (goal <= 1.5)")
        results[name] = {"alone_s": wall, "loaded_s": loaded[name], "cpu_s": cpu, "slowdown": slowdown,
                         "predicted": predicted, "ratio": slowdown / predicted}
    return results


if __name__ == "__main__":
    main()
