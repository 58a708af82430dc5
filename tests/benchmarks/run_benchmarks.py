"""`make bench`: every benchmark, each printing ratios measured side by side in this one run.

Usage: python tests/benchmarks/run_benchmarks.py [--only NAME ...] [--json FILE]
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

BENCHMARKS = {
    "stages": "a cold default run and the smoke preset broken into stages: seconds and shares",
    "students": "student training throughput: kdx 0.1's loop vs one by one now vs 2 and 31 students stacked",
    "load": "one seed alone vs next to 3 CPU-bound processes: slowdown vs what the CPU share predicts",
    "grid": "the study's tau/alpha grid on its three pairs, 5 seeds, cold cache (KDX_BENCH_BASELINE: vs old code)",
    "training_loop": "index slicing vs DataLoader(TensorDataset), batch 256",
    "protocol": "wall time of kdx run per study pair, 5 seeds",
    "efficiency": "teacher/student CPU latency ratios per study pair, profiler cost",
    "shap": "our attributions vs KernelExplainer: time on 500 rows and agreement with a permutation reference",
    "sweeps": "3x3 tau/alpha sweep on Adult, 2 seeds: reuse vs none, 2 parallel jobs vs 1",
    "objectives": "one training epoch of each distillation objective vs hinton (Adult, 64-32 student)",
    "deploy": "torch eager vs onnxruntime (raw rows, preprocessing inside) for Adult's teacher and KD student",
    "paper": "the whole study, kdx run +study=paper, cold cache",
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", nargs="*", choices=list(BENCHMARKS), default=list(BENCHMARKS))
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    from kdx.environment import cpu_model, machine

    print(f"machine: {cpu_model()}, {machine()['logical_cpus']} logical CPUs")
    results = {}
    for name in args.only:
        print(f"\n== {name}: {BENCHMARKS[name]}")
        start = time.perf_counter()
        results[name] = importlib.import_module(f"tests.benchmarks.bench_{name}").main()
        print(f"  ({time.perf_counter() - start:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=float))


if __name__ == "__main__":
    main()
