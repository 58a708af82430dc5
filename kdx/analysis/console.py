"""Rich tables for the terminal."""

from __future__ import annotations

import numpy as np
import pandas as pd
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from kdx.analysis.claims import claims_for_run, seeds_to_decide
from kdx.analysis.summary import format_mean_sd, kd_text

MAIN_COLUMNS = (("r2", "R²"), ("rmse", "RMSE"), ("mae", "MAE"), ("teacher_rmse", "RMSE to T"),
                ("teacher_r2", "R² vs T"), ("accuracy", "accuracy"), ("roc_auc", "AUC"), ("brier", "Brier"),
                ("ece", "ECE"), ("nll", "NLL"),
                ("macro_f1", "macro-F1"), ("teacher_kl", "KL(T‖S)"), ("train_seconds", "train s"))
EFFICIENCY_COLUMNS = (("params", "params"), ("prr", "PRR"), ("size_bytes", "size kB"),
                      ("latency_ms", "latency ms (b=1)"), ("latency_per_row_ms", "ms/row (batch)"),
                      ("latency_reduction", "latency −"), ("ort_latency_ms", "ONNX ms (b=1)"),
                      ("ort_latency_per_row_ms", "ONNX ms/row"), ("ort_latency_reduction", "ONNX latency −"),
                      ("peak_mb_batch", "peak MB (batch)"))
ALIGNMENT_COLUMNS = (("cosine", "cosine (rows)"), ("cosine_global", "cosine (global)"), ("mad_total", "MAD (0-1)"),
                     ("topk_agreement", "top-k"), ("spearman", "Spearman"), ("stability", "stability"),
                     ("stability_worst", "worst"), ("stability_perturbed_share", "perturbed mass"),
                     ("additivity_error", "additivity err"))
KEY_STATS = ("r2", "rmse", "accuracy", "ece", "nll", "cosine", "stability", "latency_ms")
SCALE = {"size_bytes": 1e-3}
SPEC = {"params": ".0f", "size_bytes": ".1f", "train_seconds": ".2f", "prr": ".3f", "latency_reduction": ".3f",
        "ort_latency_reduction": ".3f", "ort_latency_per_row_ms": ".5f",
        "latency_per_row_ms": ".5f", "additivity_error": ".1e"}


def _scaled(stat: dict | None, factor: float) -> dict | None:
    if stat is None or factor == 1:
        return stat
    return {k: (v * factor if isinstance(v, float) and k != "n" else v) for k, v in stat.items()}


def results_table(summary: dict, columns=MAIN_COLUMNS, what: str = "test split") -> Table:
    seeds = summary.get("seeds", [])
    title = (f"{summary['dataset']['name']}: {summary['config']['teacher']['name']} → "
             f"{summary['config']['student']['name']}, {kd_text(summary['kd']['tau'], summary['kd']['alpha'])}, "
             f"{what}, mean ± sd over {len(seeds)} seed(s)")
    table = Table(title=title, title_justify="left")
    table.add_column("model")
    present = [(key, label) for key, label in columns if any(key in m for m in summary["metrics"].values())]
    for _, label in present:
        table.add_column(label, justify="right")
    for model, stats in summary["metrics"].items():
        table.add_row(model, *(format_mean_sd(_scaled(stats.get(key), SCALE.get(key, 1)), SPEC.get(key, ".4f"))
                               for key, _ in present))
    return table


SUMMARY_COLUMNS = (("r2", "R²", ".4f"), ("rmse", "RMSE", ".4g"), ("accuracy", "accuracy", ".4f"),
                   ("ece", "ECE", ".4f"), ("cosine", "cosine", ".3f"),
                   ("stability", "stability", ".3f"), ("params", "params", ".0f"), ("latency_ms", "latency ms", ".3f"))


def _mean_sd(stat: dict | None, spec: str) -> str:
    """The mean, with ± sd only where it is not zero to the shown precision (params, shared latencies)."""
    if stat is None or stat.get("mean") is None or np.isnan(stat["mean"]):
        return "—"
    sd = stat.get("sd")
    shown = f"{stat['mean']:{spec}}"
    return shown if sd is None or np.isnan(sd) or f"{sd:{spec}}".strip("0.") == "" else f"{shown} ± {sd:{spec}}"


def _claim_line(v, seeds: int) -> str:
    """One claim verdict in one line: the verdict word, the claim, and in a few words why an inconclusive one is
    (the seeds it would need at this variance); the report has the test and figures of each."""
    word, _, why = v.verdict.partition(" (")
    reasons = []
    if "against the claim" in why:
        reasons.append("Δ against it")
    if v.seeds_needed is not None and v.seeds_needed > seeds:
        reasons.append(f"needs ≈ {v.seeds_needed} seeds, has {seeds}")
    elif "fewer than 3" in why:
        reasons.append("fewer than 3 seeds: no test")
    elif "no number" in why:
        reasons.append("more seeds cannot decide it")
    elif why:
        reasons.append(why.rstrip(")").split(";")[0])
    return f"  {word:<12} {v.claim}" + (f" ({'; '.join(reasons)})" if reasons else "")


def print_summary(console: Console, summary: dict, out_dir, metrics: pd.DataFrame | None = None,
                  comparisons: pd.DataFrame | None = None) -> None:
    """The default end of a run (console=summary): one screen — the pair, one line per model, the study's claims
    one line each, warnings, and where the full tables are."""
    cfg, seeds = summary["config"], summary.get("seeds", [])
    kd = summary["kd"]
    console.print(f"[bold]{summary['dataset']['name']}[/bold]: {cfg['teacher']['name']} → {cfg['student']['name']}, "
                  f"kd={kd['method']} {kd_text(kd['tau'], kd['alpha'])}; test split, mean ± sd over {len(seeds)} "
                  "seed(s)", highlight=False)
    present = [(k, label, spec) for k, label, spec in SUMMARY_COLUMNS
               if any(k in m for m in summary["metrics"].values())]
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    table.add_column("model")
    for _, label, _ in present:
        table.add_column(label, justify="right")
    for model, stats in summary["metrics"].items():
        table.add_row(model, *(_mean_sd(stats.get(k), spec) for k, _, spec in present))
    console.print(table)
    if metrics is not None and comparisons is not None and len(comparisons):
        alpha = summary["stats"]["alpha"]
        verdicts = claims_for_run(metrics, comparisons, alpha, summary["stats"].get("test_train_ratio", 0.0))
        first = comparisons.iloc[0]
        test = "corrected resampled t-test" if first.get("test", "paired") == "corrected" else "paired t-test"
        family = int(first.get("family_size") or 0)
        adjusted = f", Holm over {family} tests" if first.get("correction") == "holm" and family else ""
        console.print(f"The study's claims ({test}{adjusted}, α = {alpha:g}):", highlight=False)
        for v in verdicts:
            console.print(escape(_claim_line(v, len(seeds))), highlight=False, overflow="ellipsis", no_wrap=True)
    for line in summary.get("warnings", []):
        console.print(f"[bold yellow]warning:[/] {escape(line)}", highlight=False)
    console.print(f"{summary['wall_seconds']:.1f} s on {summary['device']}; every table and figure: report.md in the "
                  "run folder (console=full prints the tables here):", highlight=False)
    console.print(f"  [bold]{out_dir}[/bold]", highlight=False, soft_wrap=True)


def print_run(console: Console, summary: dict, out_dir, comparisons: pd.DataFrame | None = None) -> None:
    """console=full: every table of the run (fidelity, efficiency, alignment, statistics)."""
    console.print(results_table(summary))
    if summary.get("profile"):
        p = summary["profile"]
        setting = f"CPU, {p['threads']} thread(s), batch {p['batch_size']}"
        console.print(results_table(summary, EFFICIENCY_COLUMNS, setting))
    if summary.get("explain"):
        e = summary["explain"]
        setting = (f"SHAP to the teacher on {e['rows']} test rows, {e['background']} background rows, "
                   f"output {e['output']}, top-{e['top_k']}, σ={e['noise_sigma']:g}")
        console.print(results_table(summary, ALIGNMENT_COLUMNS, setting))
    if comparisons is not None and len(comparisons):
        console.print(stats_table(comparisons, summary["stats"]["alpha"]))
        for line in underpowered_lines(comparisons, summary["stats"]["alpha"]):
            console.print(line, highlight=False)
    for student, stat in summary.get("accuracy_retention", {}).items():
        console.print(f"accuracy retention {student}/teacher: {format_mean_sd(stat)}")
    for line in summary.get("warnings", []):
        console.print(f"[bold yellow]warning:[/] {escape(line)}", highlight=False)
    console.print(f"wall time {summary['wall_seconds']:.1f} s, trained on {summary['device']}; "
                  f"outputs in [bold]{out_dir}[/bold]")


def _num(value, spec: str = ".3f") -> str:
    return "—" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:{spec}}"


def describe_test(comparisons: pd.DataFrame, alpha: float) -> str:
    """One line naming the test, the correction and the family behind the p-values of a stats table."""
    first = comparisons.iloc[0]
    test = ("corrected resampled t-test (Nadeau–Bengio, variance × (1/n + n_test/n_train))"
            if first.get("test", "paired") == "corrected" else "paired t-test")
    adjust = (f"Holm-adjusted over {int(first['family_size'])} tests"
              if first.get("correction") == "holm" else "not adjusted for multiple comparisons")
    return f"Δ = B − A; {test}, two-sided, {adjust}; * adjusted p < {alpha:g}"


def stats_table(comparisons: pd.DataFrame, alpha: float, metrics=KEY_STATS) -> Table:
    table = Table(title="Paired comparisons over seeds (" + describe_test(comparisons, alpha) + ")",
                  title_justify="left")
    for col in ("metric", "A → B", "Δ", "95% CI", "p adj", "p plain", "p Wilcoxon", "MDE", "vs margin", "note"):
        table.add_column(col, justify="left" if col in ("metric", "A → B", "note", "vs margin") else "right")
    for _, r in comparisons[comparisons.metric.isin(metrics)].iterrows():
        spec = ".4f" if abs(r["diff"]) < 10 else ".1f"
        ci = "—" if r["ci_low"] is None or pd.isna(r["ci_low"]) else f"[{r['ci_low']:{spec}}, {r['ci_high']:{spec}}]"
        verdict = r.get("margin_verdict")
        table.add_row(r["metric"], f"{r['a']} → {r['b']}", _num(r["diff"], spec), ci,
                      _num(r["p_adjusted"], ".3g") + (" *" if r["significant"] else ""), _num(r["p_paired"], ".3g"),
                      _num(r["p_wilcoxon"], ".3g"), _num(r["mde"], spec),
                      "—" if verdict is None or pd.isna(verdict) else f"{verdict} (±{r['margin']:g})",
                      r["note"] if isinstance(r["note"], str) else "")
    return table


def underpowered_lines(comparisons: pd.DataFrame, alpha: float = 0.05,
                       metrics=("accuracy", "r2", "cosine", "stability")) -> list[str]:
    """For the key KD-vs-no-KD comparisons that are not significant: the seeds that would decide them."""
    out = []
    for _, r in comparisons[(comparisons.a == "student_nokd") & comparisons.metric.isin(metrics)].iterrows():
        if r["significant"] or r["sd_diff"] is None or pd.isna(r["sd_diff"]) or r["sd_diff"] == 0:
            continue
        n, m = seeds_to_decide(r.to_dict(), r["diff"], alpha)
        out.append(f"{r['metric']}, KD vs no-KD: not significant; the observed Δ {r['diff']:+.4f} would need "
                   + (f"≈ {n} seeds for 80 % power at α/{m}" if n else "more than any number of re-split seeds "
                      f"can give at α/{m}") + f" (this run: {int(r['n'])}).")
    return out
