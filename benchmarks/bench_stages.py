"""Where a cold `kdx run` spends its time: imports, each stage of the protocol (summary.json `stages`),
the report and figures; seconds and shares of the wall time, for the default run and the smoke preset.

Each run is a fresh process with an empty cache, as a new user's first run is. Run it alone: other work
on the machine moves every figure (README, "Speed").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

RUNS = {"default": (), "smoke": ("+smoke=on",)}


def imports_seconds() -> float:
    """What the command line imports before its first seed, in a fresh interpreter."""
    code = ("import time; t = time.perf_counter(); import kdx.cli, kdx.run.protocol, kdx.analysis.report, "
            "kdx.analysis.console; "
            "print(time.perf_counter() - t)")
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def breakdown(tmp: Path, name: str, overrides: tuple[str, ...]) -> dict:
    env = {**os.environ, "KDX_CACHE": str(tmp / f"cache-{name}"), "KDX_PROGRESS": "0"}
    out = tmp / name
    start = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "kdx", "run", *overrides, f"hydra.run.dir={out}"],
                         capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if res.returncode != 0:
        raise RuntimeError(f"{name} run failed:\n{res.stderr[-2000:]}")
    summary = json.loads((out / "summary.json").read_text())
    stages = {"imports": imports_seconds(), **summary["stages"]}
    # The report (tables and, unless the preset turns them off, figures) is written after the run; time it
    # again here on the same outputs, in this process, with its imports done.
    figures = "+smoke=on" not in overrides
    from kdx.analysis.report import write_report

    if figures:
        import kdx.analysis.figures  # noqa: F401 — its import (matplotlib) belongs to the report's time

    start = time.perf_counter()
    write_report(out, figures)
    stages["report" + (" and figures" if figures else "")] = time.perf_counter() - start
    stages["other (Hydra, console tables, writing files)"] = max(0.0, wall - sum(stages.values()))
    return {"wall": wall, "stages": stages, "timed_calls": timed_calls(out, summary)}


LATENCIES = ("latency_ms", "latency_batch_ms", "ort_latency_ms", "ort_latency_batch_ms")


def timed_calls(out: Path, summary: dict) -> float:
    """Seconds the latency protocol itself spends calling models: profile.warmup + profile.repeats calls at batch 1
    and at profile.batch_size, in torch and in onnxruntime, of every model timed (metrics.csv's mean latencies;
    a model that reuses the figures of one of the same architecture, profiled_as, is not timed). What the
    profiling and ONNX stages cannot go below without fewer repeats."""
    profile = summary["config"]["profile"]
    metrics = pd.read_csv(out / "metrics.csv")
    timed = metrics[metrics["profile_seconds"] > 0] if "profile_seconds" in metrics else metrics.iloc[:0]
    columns = [c for c in LATENCIES if c in timed]
    return float((profile["warmup"] + profile["repeats"]) * timed[columns].sum().sum() / 1e3)


def main() -> dict:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, overrides in RUNS.items():
            result = breakdown(Path(tmp), name, overrides)
            results[name] = result
            print(f"  {name} run (cold cache): {result['wall']:.1f} s wall")
            for stage, seconds in sorted(result["stages"].items(), key=lambda kv: -kv[1]):
                print(f"    {stage:48s} {seconds:7.2f} s  {100 * seconds / result['wall']:5.1f} %")
            print(f"    of profiling and ONNX: the timed latency calls the protocol fixes (warm-up + repeats, batch 1 "
                  f"and batch, torch and onnxruntime): {result['timed_calls']:.2f} s "
                  f"{100 * result['timed_calls'] / result['wall']:5.1f} %")
    return results


if __name__ == "__main__":
    main()
