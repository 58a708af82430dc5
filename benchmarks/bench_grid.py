"""The study's whole τ/α grid: `kdx run +sweep=tau_alpha experiment=E` for its three pairs (30 jobs each),
5 seeds, cold cache, every measurement on; wall time per pair and in all (goal: <= 10 minutes).

KDX_BENCH_BASELINE=DIR also times the same sweeps with the kdx source in DIR, in the same environment, one
after the other: "today's figure measured the same way". For a commit: `git archive REV | tar -x -C DIR`
and `ln -s ../conf DIR/kdx/conf` (installed, conf/ is the package kdx.conf).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.baseline import process_settings

PAIRS = ("breast_cancer", "wine_quality", "adult")


def sweeps(tmp: Path, name: str, source: str | None = None) -> dict[str, float]:
    env, cwd = process_settings({**os.environ, "KDX_CACHE": str(tmp / f"cache-{name}"), "KDX_PROGRESS": "0"},
                                source)
    walls = {}
    for pair in PAIRS:
        start = time.perf_counter()
        res = subprocess.run([sys.executable, "-m", "kdx", "run", "+sweep=tau_alpha", f"experiment={pair}",
                              f"hydra.sweep.dir={tmp / name / pair}"], capture_output=True, text=True, env=env,
                             cwd=cwd)
        walls[pair] = time.perf_counter() - start
        if res.returncode != 0:
            raise RuntimeError(f"{name} {pair} failed:\n{res.stderr[-2000:]}")
        print(f"    {name} {pair}: {walls[pair]:.0f} s")
    return walls


def main() -> dict:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        variants = {"now": None}
        if os.environ.get("KDX_BENCH_BASELINE"):
            variants["baseline"] = os.environ["KDX_BENCH_BASELINE"]
        for name, source in variants.items():
            walls = sweeps(Path(tmp), name, source)
            results[name] = {**walls, "total": sum(walls.values())}
            print(f"  {name}: the study's τ/α grid on its three pairs, 5 seeds, cold cache: "
                  f"{sum(walls.values()) / 60:.1f} min (goal <= 10 min)")
    if "baseline" in results:
        print(f"  baseline / now: x{results['baseline']['total'] / results['now']['total']:.2f}")
    return results


if __name__ == "__main__":
    main()
