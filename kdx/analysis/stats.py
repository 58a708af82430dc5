"""Paired comparisons of models over seeds, with the variance re-split seeds really have.

Every seed (or repeated-CV fold) draws a new split, so training sets overlap and the seeds are not
independent: the plain paired t-test underestimates the variance of the mean difference. The corrected
resampled t-test (Nadeau & Bengio 2003; Bouckaert & Frank 2004 for repeated k-fold) multiplies the sample
variance of the differences by 1/n + n_test/n_train instead of 1/n, with n − 1 degrees of freedom.

Per comparison (B − A over the seeds): the corrected and the plain paired t-test, the Wilcoxon signed-rank
test, Cohen's d and d_z, the mean difference with its confidence interval (the chosen test's variance), the
smallest difference the seeds could detect at the stated power (`mde`), and, where a margin is set for the
metric, non-inferiority / equivalence tests (TOST) of B against A. P-values of one run are adjusted for
multiple comparisons (Holm) per family: the two-sided difference tests; the non-inferiority tests; the
inferiority tests.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pandas as pd
from scipy import optimize
from scipy import stats as st

from kdx.config import COMPARED_METRICS
from kdx.config.schema import StatsSettings  # noqa: F401 — the settings, as the config's schema
from kdx.measure.intervals import variance_factor

# (A, B): the difference reported is B − A, so d > 0 means B scores higher.
PAIRS = (("teacher", "student_kd"), ("teacher", "student_nokd"), ("student_nokd", "student_kd"))
# Compared when present; alignment metrics exist for students only, so they enter the student pair.
METRICS = COMPARED_METRICS
# Everything else is better when lower (errors, costs, MAD).
HIGHER_IS_BETTER = frozenset({"accuracy", "macro_f1", "roc_auc", "cosine", "cosine_global", "topk_agreement",
                              "spearman", "stability", "teacher_agreement", "r2", "teacher_r2"})
FEW_SEEDS = 5
MIN_SEEDS = 3
MAX_SEEDS = 1000  # the search limit of `seeds_needed`


def better(metric: str) -> int:
    """+1 when a higher value of `metric` is better, −1 when lower is better."""
    return 1 if metric in HIGHER_IS_BETTER else -1


def t_power(ncp: float, df: int, alpha: float, two_sided: bool = True) -> float:
    """Power of a t-test with `df` degrees of freedom when the true noncentrality is `ncp`."""
    if two_sided:
        crit = st.t.ppf(1 - alpha / 2, df)
        value = st.nct.sf(crit, df, ncp) + st.nct.cdf(-crit, df, ncp)
    else:
        value = st.nct.sf(st.t.ppf(1 - alpha, df), df, ncp)
    return 1.0 if np.isnan(value) else float(value)  # scipy's nct gives NaN far in the tail, where power is 1


def minimum_detectable_difference(sd: float, n: int, test_train_ratio: float = 0.0, alpha: float = 0.05,
                                  power: float = 0.8, two_sided: bool = True) -> float:
    """The smallest true |mean difference| that `n` seeds detect with probability `power`, for differences
    with standard deviation `sd` and the (corrected) variance factor of `variance_factor`."""
    return float(_ncp(n - 1, alpha, power, two_sided) * sd * math.sqrt(variance_factor(n, test_train_ratio)))


@functools.lru_cache(maxsize=256)
def _ncp(df: int, alpha: float, power: float, two_sided: bool) -> float:
    """The noncentrality at which the t-test has `power`: the same for every metric of a run (a root search
    that was half of the statistics' time)."""
    hi = 1.0
    while t_power(hi, df, alpha, two_sided) < power:
        hi *= 2
    return optimize.brentq(lambda x: t_power(x, df, alpha, two_sided) - power, 0.0, hi)


def seeds_needed(effect: float, sd: float, test_train_ratio: float = 0.0, alpha: float = 0.05, power: float = 0.8,
                 two_sided: bool = True, limit: int = MAX_SEEDS) -> int | None:
    """The fewest seeds whose test reaches `power` for a true effect `effect` (> 0, in the tested direction)
    at standard deviation `sd`; None when even `limit` seeds do not. With re-split seeds the corrected
    variance never falls below sd²·n_test/n_train, so some effects cannot be decided by more seeds."""
    if effect <= 0 or sd <= 0:
        return None

    def enough(n: int) -> bool:
        return t_power(effect / (sd * math.sqrt(variance_factor(n, test_train_ratio))), n - 1, alpha,
                       two_sided) >= power

    if not enough(limit):
        return None
    lo, hi = 1, limit  # enough(hi) holds; power grows with n
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if enough(mid) else (mid, hi)
    return max(hi, 2)


def holm(pvalues) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (NaN entries stay NaN and do not count in the family)."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    if len(ok) == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    m = len(order)
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out[order] = adjusted
    return out


def _wilcoxon(diff: np.ndarray) -> tuple[float | None, str]:
    if np.all(diff == 0):
        return None, "all differences zero: Wilcoxon undefined"
    return float(st.wilcoxon(diff).pvalue), ""


def paired_comparison(a, b, confidence: float = 0.95, test_train_ratio: float = 0.0, alpha: float = 0.05,
                      margin: float | None = None, higher_is_better: bool = True, test: str = "corrected",
                      power: float = 0.8) -> dict:
    """Statistics of b − a over paired observations (seeds).

    - t, p: the chosen `test` (corrected: variance factor 1/n + test_train_ratio; paired: 1/n), two-sided;
      t_corrected/p_corrected and t_paired/p_paired are both kept;
    - p_wilcoxon: two-sided Wilcoxon signed-rank test (scipy), distribution-free check;
    - cohens_d: (mean_b − mean_a) / s_pooled with s_pooled = sqrt((s_a² + s_b²) / 2), the study's d;
    - d_z: mean(b − a) / sd(b − a), the paired effect size;
    - diff, ci_low, ci_high: mean difference and its t-interval with the chosen test's variance;
    - mde: smallest |difference| detectable at `power`, two-sided `alpha`, the chosen variance;
    - with `margin` m: p_noninferiority (H0: B worse than A by m or more, one-sided), p_inferiority (H0: B
      not worse by m or more) and p_equivalence (TOST: |B − A| < m), in the metric's better direction.
    Undefined values are None with the reason in `note`, never inf or NaN.
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    n = len(a)
    diff = b - a
    ratio = test_train_ratio if test == "corrected" else 0.0
    out = {"n": n, "mean_a": float(a.mean()), "mean_b": float(b.mean()), "diff": float(diff.mean()),
           "sd_diff": None, "ci_low": None, "ci_high": None, "t": None, "p": None, "t_corrected": None,
           "p_corrected": None, "t_paired": None, "p_paired": None, "p_wilcoxon": None, "cohens_d": None,
           "d_z": None, "mde": None, "test": test, "variance_factor": None, "margin": margin,
           "p_noninferiority": None, "p_inferiority": None, "p_equivalence": None, "note": ""}
    if n < MIN_SEEDS:
        out["note"] = f"{n} seed(s): fewer than {MIN_SEEDS}, no test"
        return out
    notes = []
    sd_diff = float(diff.std(ddof=1))
    s_pooled = math.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
    df = n - 1
    out.update(sd_diff=sd_diff, variance_factor=variance_factor(n, ratio))
    if sd_diff > 0:
        for name, r in (("corrected", test_train_ratio), ("paired", 0.0)):
            t = diff.mean() / (sd_diff * math.sqrt(variance_factor(n, r)))
            out[f"t_{name}"], out[f"p_{name}"] = float(t), float(2 * st.t.sf(abs(t), df))
        se = sd_diff * math.sqrt(variance_factor(n, ratio))
        half = st.t.ppf(0.5 + confidence / 2, df) * se
        out.update(t=out[f"t_{test}"], p=out[f"p_{test}"], d_z=float(diff.mean() / sd_diff),
                   ci_low=float(diff.mean() - half), ci_high=float(diff.mean() + half),
                   mde=minimum_detectable_difference(sd_diff, n, ratio, alpha, power))
        out["p_wilcoxon"], why = _wilcoxon(diff)
        if margin is not None:
            gain = diff.mean() * (1 if higher_is_better else -1)  # > 0: B better than A
            out["p_noninferiority"] = float(st.t.sf((gain + margin) / se, df))
            out["p_inferiority"] = float(st.t.cdf((gain + margin) / se, df))
            out["p_equivalence"] = float(max(st.t.sf((diff.mean() + margin) / se, df),
                                             st.t.cdf((diff.mean() - margin) / se, df)))
    else:
        out.update(ci_low=float(diff.mean()), ci_high=float(diff.mean()))
        why = ""
        notes.append("identical difference on every seed (sd 0): tests and d_z undefined")
    if why:
        notes.append(why)
    if s_pooled > 0:
        out["cohens_d"] = float(diff.mean() / s_pooled)
    else:
        notes.append("both models constant over seeds: Cohen's d undefined")
    if n < FEW_SEEDS:
        notes.append(f"only {n} seeds: low power")
    out["note"] = "; ".join(notes)
    return out


def margin_verdict(row: dict, alpha: float) -> str | None:
    """non-inferior / inferior / inconclusive from the (adjusted) one-sided tests against the margin;
    a metric constant over seeds is decided by its value."""
    if row.get("margin") is None or pd.isna(row.get("margin")):
        return None
    p_ni, p_inf = row.get("p_noninferiority_adjusted"), row.get("p_inferiority_adjusted")
    if p_ni is None or pd.isna(p_ni):
        if row.get("sd_diff") == 0:  # no variance: the difference is what it is on every seed
            gain = row["diff"] * row.get("direction", 1)
            return "non-inferior" if gain > -row["margin"] else "inferior"
        return "not tested"
    if p_ni < alpha:
        return "non-inferior"
    if p_inf < alpha:
        return "inferior"
    return "inconclusive"


def compare_models(metrics: pd.DataFrame, settings: StatsSettings | None = None,
                   test_train_ratio: float = 0.0) -> pd.DataFrame:
    """One row per (metric, pair) present in `metrics` (rows = seed × model): the statistics of
    `paired_comparison`, Holm-adjusted p-values per family (`p_adjusted`, `p_noninferiority_adjusted`,
    `p_inferiority_adjusted`), `significant` (adjusted p of the chosen test < alpha) and `margin_verdict`."""
    s = settings or StatsSettings()
    rows = []
    present = [metric for metric in METRICS if metric in metrics.columns]
    # One pivot for every metric (one per metric was most of this function's time).
    wide = metrics.pivot(index="seed", columns="model", values=present) if present else None
    models = set(metrics["model"]) if present else set()
    for metric in present:
        for a, b in PAIRS:
            if a not in models or b not in models:
                continue
            pair = wide[metric][[a, b]].to_numpy(dtype=float)
            pair = pair[~np.isnan(pair).any(axis=1)]
            if not len(pair):
                continue
            result = paired_comparison(pair[:, 0], pair[:, 1], s.confidence, test_train_ratio,
                                       s.alpha, s.margins.get(metric), metric in HIGHER_IS_BETTER, s.test, s.power)
            rows.append({"metric": metric, "a": a, "b": b, "direction": better(metric), **result})
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    adjust = holm if s.correction == "holm" else (lambda p: np.asarray(p, dtype=float))
    for col in ("p", "p_noninferiority", "p_inferiority"):
        values = pd.to_numeric(out[col], errors="coerce").to_numpy(float)
        out[f"{col}_adjusted" if col != "p" else "p_adjusted"] = adjust(values)
    out["significant"] = out.p_adjusted.lt(s.alpha)
    out["margin_verdict"] = [margin_verdict(r, s.alpha) for r in out.to_dict("records")]
    out["correction"] = s.correction
    out["family_size"] = int(out.p.notna().sum())
    out["family_size_noninferiority"] = int(pd.to_numeric(out.p_noninferiority, errors="coerce").notna().sum())
    return out


def gap_recovered(kd, nokd, teacher, confidence: float = 0.95, test_train_ratio: float = 0.0) -> dict:
    """The share of the teacher–student gap that distillation recovers, R = mean(kd − nokd) / mean(teacher −
    nokd), over paired seeds, with a delta-method interval: Var(R) ≈ (s₁₁ − 2R·s₁₂ + R²·s₂₂)·f / mean(teacher −
    nokd)², s the sample (co)variances of the two per-seed differences and f the variance factor of the test
    (1/n + n_test/n_train corrected, 1/n paired). R is None when the teacher is not better than the no-KD
    student on average (there is no gap to recover), the interval None below MIN_SEEDS seeds."""
    kd, nokd, teacher = (np.asarray(v, float) for v in (kd, nokd, teacher))
    d1, d2 = kd - nokd, teacher - nokd
    n = len(d1)
    out = {"gap": float(d2.mean()) if n else None, "recovered": None, "low": None, "high": None, "note": ""}
    if n == 0 or d2.mean() <= 0:
        out["note"] = "the teacher is not more accurate than the no-KD student: no gap to recover"
        return out
    r = float(d1.mean() / d2.mean())
    out["recovered"] = r
    if n < MIN_SEEDS:
        out["note"] = f"{n} seed(s): no interval"
        return out
    cov = np.cov(d1, d2, ddof=1)
    spread = max(0.0, cov[0, 0] - 2 * r * cov[0, 1] + r * r * cov[1, 1])
    half = st.t.ppf(0.5 + confidence / 2, n - 1) * math.sqrt(spread * variance_factor(n, test_train_ratio)) / d2.mean()
    out.update(low=r - half, high=r + half)
    return out


def split_ratio(split_sizes: dict) -> float:
    """Mean over seeds of n_test / n_train from a run's recorded split sizes."""
    ratios = [s["test"] / s["train"] for s in split_sizes.values()]
    return float(np.mean(ratios)) if ratios else 0.0
