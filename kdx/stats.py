"""Paired comparisons of models over seeds: t-test, Cohen's d, d_z, mean difference with its CI."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats as st

# (A, B): the difference reported is B − A, so d > 0 means B scores higher.
PAIRS = (("teacher", "student_kd"), ("teacher", "student_nokd"), ("student_nokd", "student_kd"))
# Compared when present; alignment metrics exist for students only, so they enter the student pair.
METRICS = ("accuracy", "ece", "nll", "macro_f1", "latency_ms", "latency_batch_ms", "params", "size_bytes",
           "peak_mb_batch", "cosine", "mad", "topk_agreement", "spearman", "stability")
FEW_SEEDS = 5


def paired_comparison(a: np.ndarray, b: np.ndarray, confidence: float = 0.95) -> dict:
    """Statistics of b − a over paired observations (seeds).

    - t, p: two-sided paired t-test (scipy.stats.ttest_rel);
    - cohens_d: (mean_b − mean_a) / s_pooled with s_pooled = sqrt((s_a² + s_b²) / 2), the study's d;
    - d_z: mean(b − a) / sd(b − a), the paired effect size;
    - diff, ci_low, ci_high: mean difference and its t-based confidence interval.
    Undefined values are None with the reason in `note`, never inf or NaN.
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    n = len(a)
    diff = b - a
    out = {"n": n, "mean_a": float(a.mean()), "mean_b": float(b.mean()), "diff": float(diff.mean()),
           "ci_low": None, "ci_high": None, "t": None, "p": None, "cohens_d": None, "d_z": None, "note": ""}
    notes = []
    if n < 2:
        out["note"] = "one seed: no variance, no test"
        return out
    sd_diff = float(diff.std(ddof=1))
    s_pooled = math.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
    if sd_diff > 0:
        t, p = st.ttest_rel(b, a)
        half = st.t.ppf(0.5 + confidence / 2, n - 1) * sd_diff / math.sqrt(n)
        out.update(t=float(t), p=float(p), d_z=float(diff.mean() / sd_diff),
                   ci_low=float(diff.mean() - half), ci_high=float(diff.mean() + half))
    else:
        out.update(ci_low=float(diff.mean()), ci_high=float(diff.mean()))
        notes.append("identical difference on every seed (sd 0): t-test and d_z undefined")
    if s_pooled > 0:
        out["cohens_d"] = float(diff.mean() / s_pooled)
    else:
        notes.append("both models constant over seeds: Cohen's d undefined")
    if n < FEW_SEEDS:
        notes.append(f"only {n} seeds: low power")
    out["note"] = "; ".join(notes)
    return out


def compare_models(metrics: pd.DataFrame, alpha: float = 0.05, confidence: float = 0.95) -> pd.DataFrame:
    """One row per (metric, pair) present in `metrics` (rows = seed × model), with `significant` at `alpha`."""
    rows = []
    for metric in METRICS:
        if metric not in metrics.columns:
            continue
        wide = metrics.pivot(index="seed", columns="model", values=metric)
        for a, b in PAIRS:
            if a not in wide or b not in wide:
                continue
            pair = wide[[a, b]].dropna()
            if pair.empty:
                continue
            result = paired_comparison(pair[a].to_numpy(), pair[b].to_numpy(), confidence)
            result["significant"] = result["p"] is not None and result["p"] < alpha
            rows.append({"metric": metric, "a": a, "b": b, **result})
    return pd.DataFrame(rows)
