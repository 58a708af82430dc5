"""`make bench`: every benchmark, each printing ratios measured side by side in this one run, and writing
what it printed into docs/performance.md (its own section: date, machine, command), so the page always holds
the latest measurement of each benchmark.

Usage: python benchmarks/run_benchmarks.py [--only NAME ...] [--json FILE] [--no-page]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib
import io
import json
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

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
    "teacher": "the default teacher's epoch vs its matmuls alone, a plain torch loop and bf16 (Adult, 1M rows)",
    "oof": "5 out-of-fold teachers together vs one by one vs one teacher (Adult dnn, Wine mlp4; seeds 0-2)",
    "augment": "Adult: generating and labelling 5x the training rows vs the teacher's training; KD student with them",
    "paper": "the whole study, kdx run +study=paper, cold cache",
    "scale": "synthetic 100k / 1M / 10M-row tables, one seed, 3 epochs: wall, time per row per stage, peak RSS",
}


PAGE = Path(__file__).resolve().parents[1] / "docs" / "performance.md"


class _Tee(io.TextIOBase):
    """Everything printed goes to the terminal and is kept for the page."""

    def __init__(self, out):
        self.out, self.kept = out, io.StringIO()

    def write(self, text: str) -> int:
        self.out.write(text)
        self.out.flush()
        return self.kept.write(text)


def write_section(page: Path, name: str, body: str) -> None:
    """Replace benchmark `name`'s section of the page (between its markers), or add it at the end."""
    text = page.read_text() if page.is_file() else "# Performance\n"
    begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    section = f"{begin}\n{body.rstrip()}\n{end}"
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + f"\n\n{section}\n"
    page.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", nargs="*", choices=list(BENCHMARKS), default=list(BENCHMARKS))
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--no-page", action="store_true", help=f"do not write {PAGE.name}")
    args = parser.parse_args()
    from kdx import __version__
    from kdx.environment import cpu_model, machine

    where = f"{cpu_model()}, {machine()['logical_cpus']} logical CPUs"
    print(f"machine: {where}")
    results = {}
    for name in args.only:
        print(f"\n== {name}: {BENCHMARKS[name]}")
        start = time.perf_counter()
        tee = _Tee(sys.stdout)
        with contextlib.redirect_stdout(tee):
            results[name] = importlib.import_module(f"benchmarks.bench_{name}").main()
        seconds = time.perf_counter() - start
        print(f"  ({seconds:.0f} s)")
        if not args.no_page:
            when = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
            write_section(PAGE, name, f"## {name}: {BENCHMARKS[name]}\n\n{when}, kdx {__version__}, {where}; "
                          f"`make bench ARGS=\"--only {name}\"` ({seconds:.0f} s):\n\n```\n"
                          f"{tee.kept.getvalue().strip()}\n```")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=float))


if __name__ == "__main__":
    main()
