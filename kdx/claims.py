"""The study's published figures and claims, each checked against a run with a stated test."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as st

# Study, Table 2 (over its datasets): teacher / student without KD / student with KD.
TABLE2 = {
    "accuracy": {"teacher": (0.968, 0.005), "student_nokd": (0.921, 0.009), "student_kd": (0.952, 0.007)},
    "cosine": {"student_nokd": (0.64, 0.06), "student_kd": (0.88, 0.04)},
    "stability": {"teacher": (0.88, 0.03), "student_nokd": (0.80, 0.05), "student_kd": (0.91, 0.02)},
}
# Study, Table 3: KD student per dataset (cosine, MAD, stability).
TABLE3 = {"adult": (0.88, 0.081, 0.91), "breast_cancer": (0.91, 0.065, 0.94), "wine_quality": (0.86, 0.093, 0.89)}


@dataclass
class Verdict:
    claim: str
    study: str
    ours: str
    test: str
    verdict: str  # reproduced | not reproduced | not tested


def _comparison(stats: pd.DataFrame | None, metric: str, a: str, b: str) -> dict | None:
    if stats is None:
        return None
    hit = stats[(stats.metric == metric) & (stats.a == a) & (stats.b == b)]
    return None if hit.empty else hit.iloc[0].to_dict()


def _directional(claim, study, stats, metric, a, b, sign: int, alpha: float) -> Verdict:
    """Claim: B differs from A in direction `sign` (+1 higher, −1 lower), significantly."""
    c = _comparison(stats, metric, a, b)
    test = f"paired t-test of {metric}, {b} − {a}, two-sided, α = {alpha:g}, and the sign of the mean difference"
    if c is None or pd.isna(c.get("diff")):
        return Verdict(claim, study, "not measured", test, "not tested")
    p = c.get("p")
    ours = f"Δ = {c['diff']:+.4f}" + ("" if p is None or pd.isna(p) else f", p = {p:.3g}") + f", n = {int(c['n'])}"
    ok = p is not None and not pd.isna(p) and p < alpha and np.sign(c["diff"]) == sign
    return Verdict(claim, study, ours, test, "reproduced" if ok else "not reproduced")


def _threshold(claim, study, values: np.ndarray | None, threshold: float, what: str) -> Verdict:
    test = f"mean over seeds of {what} > {threshold:g}"
    if values is None or len(values) == 0 or np.all(np.isnan(values)):
        return Verdict(claim, study, "not measured", test, "not tested")
    m = float(np.nanmean(values))
    return Verdict(claim, study, f"{m:.3f} (n = {np.sum(~np.isnan(values))})", test,
                   "reproduced" if m > threshold else "not reproduced")


def within_ci(values: np.ndarray, target: float, confidence: float = 0.95) -> tuple[bool | None, str]:
    """Is `target` inside the t-based confidence interval of the mean of `values`?"""
    values = np.asarray(values, float)
    values = values[~np.isnan(values)]
    if len(values) < 2:
        return None, "fewer than 2 seeds"
    m, se = values.mean(), values.std(ddof=1) / np.sqrt(len(values))
    half = st.t.ppf(0.5 + confidence / 2, len(values) - 1) * se
    return bool(m - half <= target <= m + half), f"[{m - half:.3f}, {m + half:.3f}]"


def claims_for_run(metrics: pd.DataFrame, stats: pd.DataFrame | None, alpha: float) -> list[Verdict]:
    """The study's qualitative claims, checked on one run (one dataset and pair, over seeds)."""
    def col(model, metric):
        rows = metrics[metrics.model == model]
        return rows[metric].to_numpy(float) if metric in rows else None

    verdicts = [
        _directional("KD student more accurate than the same student without KD", "95.2 vs 92.1 %", stats,
                     "accuracy", "student_nokd", "student_kd", +1, alpha),
        _directional("KD student's explanations closer to the teacher's than without KD", "cosine 0.88 vs 0.64",
                     stats, "cosine", "student_nokd", "student_kd", +1, alpha),
        _directional("KD student more stable than without KD", "stability 0.91 vs 0.80", stats, "stability",
                     "student_nokd", "student_kd", +1, alpha),
        _directional("KD student more stable than the teacher", "stability 0.91 vs 0.88", stats, "stability",
                     "teacher", "student_kd", +1, alpha),
        _directional("KD improves calibration (lower ECE than without KD)", "ECE improved by 2.3 %", stats, "ece",
                     "student_nokd", "student_kd", -1, alpha),
    ]
    acc_t, acc_s = col("teacher", "accuracy"), col("student_kd", "accuracy")
    retention = None if acc_t is None or acc_s is None else acc_s / acc_t
    verdicts.append(_threshold("KD student keeps ≥ 95 % of the teacher's accuracy", "retention 95–98 %",
                               None if retention is None else retention, 0.95 - 1e-12, "student_kd / teacher accuracy"))
    verdicts.append(_threshold("parameters reduced by more than 60 %", "PRR 72 %", col("student_kd", "prr"), 0.6,
                               "PRR of the KD student"))
    verdicts.append(_threshold("CPU inference latency reduced by more than 60 %", "−64 % (12.8 → 4.6 ms)",
                               col("student_kd", "latency_reduction"), 0.6, "latency reduction at batch 1"))
    return verdicts


def tau_claim(points: pd.DataFrame) -> Verdict:
    """'τ between 3 and 5 works best': on a sweep over τ, the τ with the best mean validation accuracy of
    the KD student (per dataset/pair and α) must lie in [3, 5]."""
    claim, study = "τ between 3 and 5 gives the best KD student", "τ ∈ [3, 5]"
    test = "per dataset/pair/α with ≥ 3 τ values: argmax over τ of mean validation accuracy ∈ [3, 5] in every group"
    kd = points[points.model == "student_kd"]
    groups = [g for _, g in kd.groupby(["dataset", "pair", "alpha"]) if g.tau.nunique() >= 3]
    if not groups:
        return Verdict(claim, study, "no τ sweep in these runs", test + " (run kdx run -m kd.tau=1,2,3,4,5,8)",
                       "not tested")
    best = [float(g.loc[g.val_accuracy.idxmax(), "tau"]) for g in groups]
    ok = all(3 <= b <= 5 for b in best)
    return Verdict(claim, study, "best τ: " + ", ".join(f"{b:g}" for b in best), test,
                   "reproduced" if ok else "not reproduced")
