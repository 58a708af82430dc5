"""A 3×3 τ/α sweep on Adult (2 seeds): with teacher/baseline reuse vs without, and 2 parallel jobs vs 1.

All four sweeps run here, one after the other, through the real CLI; each reuse variant starts from an
empty cache, so the reuse gain is what one sweep saves on its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GRID = ("experiment=adult", "seeds=[0,1]", "kd.tau=2,4,8", "kd.alpha=0.1,0.5,0.9")


def _sweep(tmp: Path, name: str, *extra: str) -> float:
    env = {**os.environ, "KDX_CACHE": str(tmp / f"cache-{name}")}
    start = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "kdx", "run", "-m", *GRID, *extra, f"hydra.sweep.dir={tmp / name}"],
                         capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if res.returncode != 0:
        raise RuntimeError(f"sweep {name} failed:\n{res.stderr[-2000:]}")
    return wall


def main() -> dict:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        no_reuse = _sweep(tmp, "no_reuse", "cache.enabled=false")
        reuse = _sweep(tmp, "reuse")
        print(f"  reuse: {reuse:.0f} s vs without: {no_reuse:.0f} s -> x{no_reuse / reuse:.2f} less wall time "
              "(goal ≥ 2.5)")
        serial = _sweep(tmp, "serial", "cache.enabled=false")
        parallel = _sweep(tmp, "parallel", "cache.enabled=false", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
        print(f"  2 parallel jobs (joblib, 1 thread each): {parallel:.0f} s vs 1 job at a time (2 threads): "
              f"{serial:.0f} s -> x{serial / parallel:.2f} (goal ≥ 1.6; no reuse in either, to measure parallelism)")
        serial_one_thread = _sweep(tmp, "serial_1thread", "cache.enabled=false", "threads=1")
        print(f"  for reference, 1 job at a time on 1 thread: {serial_one_thread:.0f} s -> 2 parallel jobs are "
              f"x{serial_one_thread / parallel:.2f} faster (job-level scaling at equal threads per job)")
        parallel_reuse = _sweep(tmp, "parallel_reuse", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
        print(f"  both together (reuse + 2 parallel jobs): {parallel_reuse:.0f} s -> x{no_reuse / parallel_reuse:.2f} "
              f"vs the plain sweep; with reuse (the default), 2 parallel jobs vs 1: x{reuse / parallel_reuse:.2f}")
    return {"no_reuse_s": no_reuse, "reuse_s": reuse, "reuse_speedup": no_reuse / reuse, "serial_s": serial,
            "parallel_s": parallel, "parallel_speedup": serial / parallel, "serial_1thread_s": serial_one_thread,
            "parallel_reuse_s": parallel_reuse, "parallel_speedup_with_reuse": reuse / parallel_reuse}


if __name__ == "__main__":
    main()
