"""Are two runs (or two sweeps, e.g. `kdx run +study=paper` before and after a change) the same, timings aside?

    python benchmarks/compare_runs.py BEFORE_DIR AFTER_DIR [--tolerance 0]

Every job folder (one holding metrics.csv) of BEFORE is paired with the job of AFTER that has the same
resolved config (`kd`, dataset, teacher, student, seeds); for each, every non-timing column of metrics.csv
per (seed, model), every statistic of stats.csv and the claim verdicts and selections of the sweep's report
tables are compared. Prints the largest differences and exits 1 when any exceeds the tolerance (default 0:
the same figures to the last bit). Timing and memory columns differ from run to run and are left out."""

from __future__ import annotations

import argparse
import json
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

TIMED = re.compile(r"latency|seconds|_ms$|_ms_|peak_mb|model_mb|^ort_|profile_|^reused$|^wall")
# Content keys of configs (they hash the config's `_target_`s, so they change when a module moves): not results.
IDENTITY = re.compile(r"_id$|^candidate$")
# Holm adjusts over every test of a run, the timed comparisons (latency, memory) included, so adjusted p-values
# move with timing noise: reported, not required equal. Whether a test is significant must not move.
NOISY = re.compile(r"^p_adjusted$|^ours$")
REPORT_TABLES = ("report_claims.csv", "report_best_per_profile.csv", "report_pareto.csv", "report_table2.csv",
                 "report_tuned.csv", "report_methods.csv")


def jobs(root: Path) -> dict[str, Path]:
    """Job folders by a key of what determines their results."""
    out = {}
    for metrics in sorted(root.rglob("metrics.csv")):
        folder = metrics.parent
        summary = json.loads((folder / "summary.json").read_text()) if (folder / "summary.json").is_file() else {}
        config = summary.get("config", {})
        nodes = {k: config.get(k) for k in ("dataset", "teacher", "student", "kd", "seeds", "split")}
        # Keys later kdx versions added with their defaults (the study's rows and labels) pair with their absence.
        nodes["kd"] = {k: v for k, v in (nodes["kd"] or {}).items()
                       if (k, v) not in (("soft_labels", "insample"), ("oof_folds", 5))}
        if "tau" in nodes["kd"] and nodes["kd"]["tau"] is None:  # kd.tau: null, as the objective resolved it
            nodes["kd"]["tau"] = (summary.get("kd") or {}).get("tau")
        nodes["dataset"] = {k: v for k, v in (nodes["dataset"] or {}).items() if (k, v) != ("task", "auto")}
        augment = config.get("augment") or {"name": "none"}
        if augment.get("name") != "none":
            nodes["augment"] = augment
        key = json.dumps({k: {n: v for n, v in node.items() if n != "_target_"} if isinstance(node, dict) else node
                          for k, node in nodes.items()}, sort_keys=True)
        out[key] = folder
    return out


def differences(a: pd.DataFrame, b: pd.DataFrame, keys: list[str], label: str,
                added: bool = False) -> list[tuple[float, str]]:
    """(largest |Δ|, description) for every comparable column; text columns must be equal (Δ = inf if not).
    `added`: rows only AFTER has (a later version's new metrics) are listed, not counted as differences."""
    merged = a.merge(b, on=keys, how="outer", suffixes=("_a", "_b"), indicator=True)
    out = []
    if added and (merged["_merge"] == "right_only").any():
        print(f"  added after: {label}: {int((merged['_merge'] == 'right_only').sum())} rows")
        merged = merged[merged["_merge"] != "right_only"]
    if (merged["_merge"] != "both").any():
        out.append((float("inf"), f"{label}: rows present on one side only"))
    for column in a.columns:
        if column in keys or TIMED.search(column) or IDENTITY.search(column) or f"{column}_b" not in merged:
            continue
        x, y = merged[f"{column}_a"], merged[f"{column}_b"]
        if pd.api.types.is_numeric_dtype(x) and pd.api.types.is_numeric_dtype(y):
            xa, ya = x.to_numpy(float), y.to_numpy(float)
            both_nan = np.isnan(xa) & np.isnan(ya)
            gap = np.where(both_nan, 0.0, np.abs(xa - ya))
            worst = float(np.nanmax(np.where(np.isnan(gap), np.inf, gap))) if len(gap) else 0.0
        else:
            worst = 0.0 if (x.fillna("").astype(str) == y.fillna("").astype(str)).all() else float("inf")
        out.append((worst, f"{label}: {column}" + (" (noisy: see NOISY)" if NOISY.search(column) else "")))
    return out


def main() -> None:
    warnings.simplefilter("ignore", pd.errors.PerformanceWarning)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--tolerance", type=float, default=0.0)
    parser.add_argument("--added", action="store_true",
                        help="AFTER may add rows and columns (new metrics): compare what both have, list the rest")
    args = parser.parse_args()
    before, after = jobs(args.before), jobs(args.after)
    found = []
    if set(before) != set(after):
        found.append((float("inf"), f"jobs differ: {len(before)} before, {len(after)} after"))
    for key in sorted(set(before) & set(after)):
        a, b = before[key], after[key]
        name = a.relative_to(args.before).as_posix() or "."
        found += differences(pd.read_csv(a / "metrics.csv"), pd.read_csv(b / "metrics.csv"), ["seed", "model"],
                             f"{name} metrics", args.added)
        if (a / "stats.csv").is_file():
            x, y = (t[~t.metric.astype(str).str.contains(TIMED)] for t in
                    (pd.read_csv(a / "stats.csv"), pd.read_csv(b / "stats.csv")))  # comparisons of timings
            found += differences(x, y, ["metric", "a", "b"], f"{name} stats", args.added)
    for table in REPORT_TABLES:
        files = (args.before / table, args.after / table)
        if all(f.is_file() for f in files):
            x, y = (pd.read_csv(f) if f.stat().st_size > 1 else pd.DataFrame() for f in files)  # empty: no rows
            if "claim" in x.columns:  # a claim about measured latency is a timing
                x, y = (t[~t.claim.astype(str).str.contains("latency")].reset_index(drop=True) for t in (x, y))
            kept = [c for c in x.columns if not TIMED.search(str(c)) and not IDENTITY.search(str(c))]
            if args.added and set(x.columns) <= set(y.columns) and len(x) == len(y):
                extra = [c for c in y.columns if c not in x.columns]
                if extra:
                    print(f"  added after: {table}: columns {extra}")
                y = y[list(x.columns)]
            if list(x.columns) != list(y.columns) or x.shape != y.shape:
                found.append((float("inf"), f"{table}: other columns or rows"))
                continue
            text = [t[kept].astype(object).where(t[kept].notna(), "").astype(str).values for t in (x, y)]
            cells = (text[0] != text[1]).any(axis=0)
            found.append((0.0, f"{table}: every non-timing cell")) if not cells.any() else found.extend(
                (float("inf"), f"{table}: {column}" + (" (noisy: see NOISY)" if NOISY.search(column) else ""))
                for column, bad in zip(kept, cells) if bad)
    worst = sorted(found, reverse=True)
    noisy = [f for f in worst if "(noisy" in f[1] and f[0] > args.tolerance]
    over = [f for f in worst if f[0] > args.tolerance and "(noisy" not in f[1]]
    for gap, what in noisy:
        print(f"  differs, as timing noise lets it: {gap:.3g}  {what}")
    print(f"{len(before)} jobs before, {len(after)} after; {len(found)} columns and tables compared; "
          f"{len(over)} differ by more than {args.tolerance:g}")
    for gap, what in (over or worst)[:15]:
        print(f"  {gap:.3g}  {what}")
    sys.exit(1 if over else 0)


if __name__ == "__main__":
    main()
