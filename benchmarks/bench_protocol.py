"""Wall time of `kdx run` for each study pair (the real CLI, 5 seeds), in one run."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PAIRS = ("adult", "breast_cancer", "wine_quality")


def main(seeds: str = "[0,1,2,3,4]", extra: tuple[str, ...] = ()) -> dict:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for pair in PAIRS:
            out = Path(tmp) / pair
            start = time.perf_counter()
            res = subprocess.run(
                [sys.executable, "-m", "kdx", "run", f"experiment={pair}", f"seeds={seeds}",
                 f"hydra.run.dir={out}", *extra],
                capture_output=True, text=True,
            )
            wall = time.perf_counter() - start
            if res.returncode != 0:
                print(f"  {pair}: FAILED\n{res.stderr}")
                continue
            summary = json.loads((out / "summary.json").read_text())
            acc = {m: summary["metrics"][m]["accuracy"] for m in ("teacher", "student_nokd", "student_kd")}
            results[pair] = {"wall_s": wall, "accuracy": acc}
            print(f"  {pair:14s} wall {wall:6.1f} s | accuracy " + " | ".join(
                f"{m} {a['mean']:.4f}±{a['sd']:.4f}" for m, a in acc.items()))
    return results


if __name__ == "__main__":
    main()
