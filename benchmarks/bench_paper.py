"""Wall time of the whole study: `kdx run +study=paper` (3 datasets × their pairs, 5 seeds, one report)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> dict:
    with tempfile.TemporaryDirectory() as d:
        env = {**os.environ, "KDX_CACHE": str(Path(d) / "cache")}  # cold cache: everything is trained
        start = time.perf_counter()
        res = subprocess.run([sys.executable, "-m", "kdx", "run", "+study=paper", f"hydra.sweep.dir={d}/paper"],
                             capture_output=True, text=True, env=env)
        wall = time.perf_counter() - start
        if res.returncode != 0:
            raise RuntimeError(res.stderr[-2000:])
        ok = (Path(d) / "paper" / "report.md").is_file()
    print(f"  kdx run +study=paper: {wall:.0f} s (goal: well under 600 s), report written: {ok}")
    return {"wall_s": wall, "report": ok}


if __name__ == "__main__":
    main()
