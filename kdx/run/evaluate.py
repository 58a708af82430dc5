"""`kdx eval`: recompute a run's test metrics from its checkpoints and compare with what it recorded."""

from __future__ import annotations

import numpy as np
from rich.console import Console
from rich.table import Table

from kdx.config import split_settings
from kdx.data.rows import fingerprint, load_data, split_of
from kdx.errors import DataError
from kdx.measure.metrics import headline, headline_name, predictive_metrics, scores
from kdx.run.loading import load_run
from kdx.store.persist import MODELS


def evaluate_run(path) -> dict:
    """Per (seed, model): recorded vs recomputed test metrics, and whether the saved split is reproduced."""
    run = load_run(path)
    cfg = run.config
    data = load_data(cfg)
    check_same_data(run, data)
    recorded = run.metrics.set_index(["seed", "model"])
    key = headline(run.metrics.columns)  # accuracy, or R² for a regression
    rows, worst = [], 0.0
    for seed in run.seeds:
        split = run.split(seed)
        top = max(int(part.max()) for part in (split.train, split.val, split.test) if len(part))
        if top >= len(data.y):  # a run with no summary.json (interrupted) has no fingerprint to compare
            raise DataError(f"{run.path}: seed {seed}'s split reaches row {top} but "
                            f"{data.name} now has {len(data.y)} rows: the data changed since the run; restore the "
                            "file the run used, or rerun it")
        rederived = split_of(data, seed, split_settings(cfg))
        same_split = all(np.array_equal(a, b) for a, b in zip(
            (split.train, split.val, split.test), (rederived.train, rederived.val, rederived.test)))
        X_test = data.X.iloc[split.test]
        for name in MODELS:
            if (seed, name) not in recorded.index:
                continue
            now = scores(run.logits(X_test, name, seed), data.y[split.test], cfg.metrics.ece_bins,
                         run.preprocessor(seed))
            # Metrics the run recorded (an older run lacks the later ones); an undefined AUC (NaN) on both sides
            # reproduces.
            then = recorded.loc[(seed, name)]
            diff = max((0.0 if np.isnan(now[k]) and np.isnan(then[k]) else abs(now[k] - then[k])
                        for k in predictive_metrics(data.regression) if k in then.index), default=0.0)
            worst = max(worst, diff)
            rows.append({"seed": seed, "model": name, "recorded": then[key], "now": now[key], "max_abs_diff": diff,
                         "split_reproduced": same_split})
    return {"path": str(run.path), "complete": run.complete, "rows": rows, "max_abs_diff": worst, "metric": key,
            "compared": list(predictive_metrics(data.regression))}


def check_same_data(run, data) -> None:
    """The data a run's config names must be the data it ran on (summary.json's fingerprint): otherwise its
    recorded metrics cannot be recomputed, and one line says so."""
    recorded = (run.summary or {}).get("data_fingerprint")
    if recorded is None or recorded == fingerprint(data):
        return
    then = (run.summary.get("dataset") or {}).get("rows")
    size = f"{then} rows then, {len(data.y)} now" if then != len(data.y) else f"{len(data.y)} rows, other values"
    where = run.config.dataset.get("path") or data.name
    raise DataError(f"{run.path}: the data no longer matches the run ({where}: {size}; its fingerprint differs from "
                    "summary.json's data_fingerprint): restore the file the run used, or rerun the run on the new data")


def print_evaluation(console: Console, report: dict, tolerance: float) -> None:
    table = Table(title=f"kdx eval {report['path']}", title_justify="left")
    name = headline_name(report["metric"])
    for col in ("seed", "model", f"{name} recorded", f"{name} now", f"max |Δ| ({', '.join(report['compared'])})",
                "split"):
        table.add_column(col, justify="right" if col != "model" else "left")
    for r in report["rows"]:
        table.add_row(str(r["seed"]), r["model"], f"{r['recorded']:.6f}", f"{r['now']:.6f}",
                      f"{r['max_abs_diff']:.2e}", "same" if r["split_reproduced"] else "DIFFERENT")
    console.print(table)
    if not report["complete"]:
        console.print("[yellow]the run did not finish (no complete summary.json): only its finished seeds were checked")
    ok = report["max_abs_diff"] <= tolerance
    console.print(f"{'[green]OK' if ok else '[red]MISMATCH'}[/]: largest difference {report['max_abs_diff']:.2e} "
                  f"(tolerance {tolerance:g})")
