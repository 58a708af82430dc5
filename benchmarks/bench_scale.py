"""`make bench ARGS="--only scale"`: kdx on synthetic tables of 100k, 1M and 10M rows (20 numeric and 2
categorical features, a binary target), one seed, teacher and student capped at 3 epochs, everything else
default: wall time, seconds per row of every stage (summary.json `stages`), and peak RSS — in total, per row
above the import baseline (the same run on a 1,000-row table: torch, shap, onnxruntime, ...), and per stage
(summary.json `stages_peak_growth`: the bytes each stage added to the peak).

Each run is a fresh `kdx run` process with an empty cache; its peak RSS is the kernel's high-water mark of that
process's memory as the run ends (summary.json `peak_rss`, kdx.timing.peak_rss; the report written after it is
not included). The tables are generated here (seeded), never committed. A size whose projected peak
(from the largest size measured so far, bytes per row × rows) exceeds 80 % of the machine's memory is not run:
the line says so, with the projection. Run it alone: other work moves the timings (not the memory).
On the 1M-row table the CSV readers are compared alone too (kdx's one-thread pandas reader, pandas with a thread per
core, pyarrow's reader): seconds and peak RSS each.
Rows: KDX_SCALE_ROWS (comma-separated) overrides the sizes, e.g. KDX_SCALE_ROWS=100000,1000000.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

SIZES = (100_000, 1_000_000, 10_000_000)
BASELINE_ROWS = 1_000
SETTINGS = ("seeds=[0]", "teacher.epochs=3", "student.epochs=3")
MEMORY_SHARE = 0.8  # of the machine's memory a projected peak may reach
READER_ROWS = 1_000_000  # the table the CSV readers are compared on


def synthetic_table(rows: int, path: Path, seed: int = 0, chunk: int = 1_000_000) -> None:
    """20 numeric features (Gaussian, 2 % missing), 2 categorical (8 and 40 levels) and a binary target from a
    logistic model with an interaction, written as CSV in chunks (a 10M-row table never sits in memory whole)."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=20)
    header = True
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        numeric = rng.normal(size=(n, 20)).astype(np.float32)
        cat_a, cat_b = rng.integers(0, 8, n), rng.integers(0, 40, n)
        score = numeric @ weights / 4 + 0.8 * numeric[:, 0] * numeric[:, 1] + 0.3 * (cat_a - 3.5) / 2
        target = (score + rng.logistic(size=n) > 0).astype(np.int8)
        numeric[rng.random((n, 20)) < 0.02] = np.nan
        frame = pd.DataFrame(numeric, columns=[f"x{j}" for j in range(20)])
        frame["region"] = np.char.add("r", cat_a.astype(str))
        frame["shop"] = np.char.add("s", cat_b.astype(str))
        frame["y"] = target
        frame.to_csv(path, mode="w" if header else "a", header=header, index=False, float_format="%.6g")
        header = False


def run(path: Path, out: Path, cache: Path) -> dict:
    """One `kdx run` on the table: wall seconds, peak RSS (bytes) and its summary's stages."""
    env = {**os.environ, "KDX_CACHE": str(cache), "KDX_PROGRESS": "0"}
    command = [sys.executable, "-m", "kdx", "run", "dataset=csv", f"dataset.path={path}", "dataset.target=y",
               *SETTINGS, f"hydra.run.dir={out}"]
    start = time.perf_counter()
    with open(out.parent / f"{out.name}.log", "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        tail = (out.parent / f"{out.name}.log").read_text()[-1500:]
        raise RuntimeError(f"kdx run on {path.name} failed:\n{tail}")
    summary = json.loads((out / "summary.json").read_text())
    # The run's own high-water mark (kdx.timing.peak_rss), not wait4's maximum, which counts this process's
    # memory too (a child's peak starts at its parent's resident set at fork).
    return {"wall": wall, "peak_rss": summary.get("peak_rss") or usage.ru_maxrss * 1024, "stages": summary["stages"],
            "peak_growth": summary.get("stages_peak_growth", {}), "rows": summary["dataset"]["rows"]}


READERS = {
    "kdx (pandas, one thread)": "from kdx.data.loaders import read_table; read_table(path)",
    "pandas, a thread per core": "import pandas as pd; pd.read_csv(path)",
    "pyarrow, a thread per core, to pandas": (
        "import pyarrow.csv as pc; pc.read_csv(path, convert_options=pc.ConvertOptions(strings_can_be_null=True))"
        ".to_pandas(split_blocks=True, self_destruct=True)"),
}


def readers(path: Path) -> dict[str, tuple[float, int] | None]:
    """kdx's reader beside pandas' threaded one and pyarrow's, on the same table, each in a fresh process (pandas
    and pyarrow imported first): seconds, and the bytes by which reading raised the process's peak RSS
    (kdx.timing.peak_rss: VmHWM, which, unlike getrusage, starts at exec, not at the parent's size). None: the
    reader is not installed."""
    out = {}
    for name, code in READERS.items():
        script = ("import time; from pathlib import Path; import pandas, kdx.data.loaders\n"
                  "from kdx.timing import peak_rss\n"
                  "try:\n    import pyarrow.csv\nexcept ImportError:\n    pass\n"
                  f"path = Path({str(path)!r}); before = peak_rss()\n"
                  f"start = time.perf_counter(); {code}\n"
                  "print(time.perf_counter() - start, peak_rss() - before)")
        res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
        if res.returncode != 0:
            out[name] = None
            continue
        seconds, grown = res.stdout.split()
        out[name] = (float(seconds), int(grown))
    return out


def machine_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def main() -> dict:
    sizes = tuple(int(s) for s in os.environ.get("KDX_SCALE_ROWS", "").split(",") if s) or SIZES
    if sizes != SIZES:
        print(f"  sizes {', '.join(f'{s:,}' for s in sizes)} (KDX_SCALE_ROWS; the benchmark's own: "
              f"{', '.join(f'{s:,}' for s in SIZES)})")
    results: dict = {"sizes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        table = tmp / "baseline.csv"
        synthetic_table(BASELINE_ROWS, table)
        base = run(table, tmp / "baseline", tmp / "cache-baseline")
        results["baseline_rss"] = base["peak_rss"]
        print(f"  import baseline ({BASELINE_ROWS} rows): peak RSS {base['peak_rss'] / 2**20:.0f} MB, "
              f"{base['wall']:.1f} s")
        per_row = None
        for rows in sizes:
            if per_row is not None:
                projected = base["peak_rss"] + per_row * rows
                if projected > MEMORY_SHARE * machine_memory():
                    print(f"  {rows:>10,} rows: not run — projected peak {projected / 2**30:.1f} GB at "
                          f"{per_row:.0f} bytes/row is over {MEMORY_SHARE:.0%} of this machine's "
                          f"{machine_memory() / 2**30:.0f} GB")
                    results["sizes"][rows] = {"skipped": True, "projected_peak": projected}
                    continue
            table = tmp / f"t{rows}.csv"
            start = time.perf_counter()
            synthetic_table(rows, table)
            made = time.perf_counter() - start
            result = run(table, tmp / f"r{rows}", tmp / f"cache-{rows}")
            if rows == READER_ROWS:
                results["readers"] = readers(table)
            table.unlink()
            per_row = (result["peak_rss"] - base["peak_rss"]) / rows
            result["bytes_per_row"] = per_row
            results["sizes"][rows] = result
            print(f"  {rows:>10,} rows: {result['wall']:7.1f} s wall, peak RSS {result['peak_rss'] / 2**30:5.2f} GB, "
                  f"{per_row:6.0f} bytes/row above the baseline (CSV {table.name}: {made:.0f} s to write)")
        measured = {r: v for r, v in results["sizes"].items() if not v.get("skipped")}
        if measured:
            stages = sorted({s for v in measured.values() for s in v["stages"]},
                            key=lambda s: -max(v["stages"].get(s, 0) for v in measured.values()))
            print("  seconds per million rows, by stage:")
            print("    " + f"{'stage':40s}" + "".join(f"{r:>14,}" for r in measured))
            for stage in stages:
                print("    " + f"{stage:40s}" + "".join(f"{1e6 * v['stages'].get(stage, 0) / r:14.2f}"
                                                        for r, v in measured.items()))
            print("  bytes per row by which each stage raised the peak (the stage where a table's memory goes):")
            print("    " + f"{'stage':40s}" + "".join(f"{r:>14,}" for r in measured))
            grown = sorted({s for v in measured.values() for s in v["peak_growth"]},
                           key=lambda s: -max(v["peak_growth"].get(s, 0) / r for r, v in measured.items()))
            for stage in grown:
                print("    " + f"{stage:40s}" + "".join(f"{v['peak_growth'].get(stage, 0) / r:14.0f}"
                                                        for r, v in measured.items()))
            if results.get("readers"):
                print(f"  reading the {READER_ROWS:,}-row CSV alone (fresh process each): seconds, peak RSS rise")
                for name, figures in results["readers"].items():
                    shown = "not installed" if figures is None else f"{figures[0]:6.2f} s {figures[1] / 2**20:7.0f} MB"
                    print(f"    {name:40s} {shown}")
            if len(measured) > 1:
                (small, a), (large, b) = list(measured.items())[-2:]
                print(f"  per-row time ratio {large:,} / {small:,} rows (linear = 1): "
                      f"wall {(b['wall'] / large) / (a['wall'] / small):.2f}")
    return results


if __name__ == "__main__":
    main()
