"""Running older kdx source beside the current one (KDX_BENCH_BASELINE=DIR), in the same environment.

`python -m kdx` puts its working directory first on sys.path: started from this repository's root (as
`make bench` is) it imports this checkout's kdx whatever PYTHONPATH says. So a baseline process runs from
DIR, and is checked to import kdx from DIR before it is timed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def process_settings(env: dict, source: str | None) -> tuple[dict, str | None]:
    """(environment, working directory) for a kdx process that runs `source` (None: this checkout)."""
    if not source:
        return env, None
    env = {**env, "PYTHONPATH": os.pathsep.join([source, env.get("PYTHONPATH", "")])}
    found = subprocess.run([sys.executable, "-c", "import kdx; print(kdx.__file__)"], env=env, cwd=source,
                           capture_output=True, text=True, check=True).stdout.strip()
    if not Path(found).resolve().is_relative_to(Path(source).resolve()):
        raise RuntimeError(f"KDX_BENCH_BASELINE={source}: kdx imports from {found}, not from there")
    return env, source
