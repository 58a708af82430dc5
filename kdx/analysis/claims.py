"""The study's published figures and claims, each checked against a run with a stated test.

Verdicts: *supported*, *contradicted*, *inconclusive* (with the seeds that would decide it at the observed
variance, or why more seeds would not) and *not tested*. The plain paired t-test's verdict without any
correction (what kdx 0.1 reported) is kept beside each, so a reader sees what the corrections changed.
Claims about what KD does are checked against the no-KD student: an effect the no-KD student shows as well
belongs to the student architecture, not to distillation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as st

from kdx.analysis.stats import holm, seeds_needed
from kdx.measure.intervals import mean_interval, variance_factor
from kdx.measure.metrics import headline, headline_name

# Study, Table 2 (over its datasets): teacher / student without KD / student with KD.
TABLE2 = {
    "accuracy": {"teacher": (0.968, 0.005), "student_nokd": (0.921, 0.009), "student_kd": (0.952, 0.007)},
    "cosine": {"student_nokd": (0.64, 0.06), "student_kd": (0.88, 0.04)},
    "stability": {"teacher": (0.88, 0.03), "student_nokd": (0.80, 0.05), "student_kd": (0.91, 0.02)},
}
# Study, Table 3: KD student per dataset (cosine, MAD, stability).
TABLE3 = {"adult": (0.88, 0.081, 0.91), "breast_cancer": (0.91, 0.065, 0.94), "wine_quality": (0.86, 0.093, 0.89)}
SUPPORTED, CONTRADICTED, INCONCLUSIVE, NOT_TESTED = "supported", "contradicted", "inconclusive", "not tested"


@dataclass
class Verdict:
    claim: str
    study: str
    ours: str
    test: str
    verdict: str  # supported | contradicted | inconclusive (…) | not tested
    old_verdict: str = "—"  # plain paired t-test, no correction: reproduced | not reproduced
    effect_of: str = "—"  # KD | the student architecture (the no-KD student shows it too) | —
    # An inconclusive verdict's seeds for 80 % power at the observed effect (seeds_to_decide); None otherwise
    seeds_needed: int | None = None


def _comparison(stats: pd.DataFrame | None, metric: str, a: str, b: str) -> dict | None:
    if stats is None or "metric" not in stats:
        return None
    hit = stats[(stats.metric == metric) & (stats.a == a) & (stats.b == b)]
    return None if hit.empty else hit.iloc[0].to_dict()


def _num(value) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def _ratio(c: dict) -> float:
    """n_test/n_train used by the comparison's variance (0 for the plain paired test)."""
    factor = _num(c.get("variance_factor"))
    return 0.0 if factor is None else max(0.0, factor - 1.0 / c["n"])


def seeds_to_decide(c: dict, effect: float, alpha: float, two_sided: bool = True,
                    family: int | None = None) -> tuple[int | None, int]:
    """For a comparison row of stats.csv: the seeds that would detect `effect` with 80 % power at the
    strictest level of the multiplicity adjustment (α/m, Holm's first step; None: no number would), and m."""
    m = family if family is not None else int(c.get("family_size") or 1) if c.get("correction") == "holm" else 1
    m = max(m, 1)
    return seeds_needed(abs(effect), _num(c.get("sd_diff")) or 0.0, _ratio(c), alpha / m, 0.8, two_sided), m


def _undecided(effect: float, c: dict, alpha: float, two_sided: bool, against: bool = False,
               family: int | None = None) -> tuple[str, int | None]:
    """Why a claim is inconclusive (`seeds_to_decide`, or that no number of seeds would), and those seeds."""
    sd = _num(c.get("sd_diff"))
    if sd is None or sd == 0:
        return f"{INCONCLUSIVE} (no test: {c.get('note') or 'no variance'})", None
    n, m = seeds_to_decide(c, effect, alpha, two_sided, family)
    lead = "Δ against the claim; " if against else ""
    level = f" at α/{m}" if m > 1 else ""
    if n is None:
        return (f"{INCONCLUSIVE} ({lead}no number of re-split seeds decides it{level}: the corrected variance "
                f"stays above sd²·n_test/n_train)"), None
    if n <= int(c["n"]):  # the run had the seeds and still fell short: an unlucky draw near the threshold
        return (f"{INCONCLUSIVE} ({lead}borderline: ≈ {n} seeds give 80 % power{level} for the observed Δ and this "
                f"run has {int(c['n'])}; more seeds should decide it)"), n
    return f"{INCONCLUSIVE} ({lead}underpowered, needs ≈ {n} seeds{level}; this run has {int(c['n'])})", n


def _old(c: dict, sign: int, alpha: float) -> str:
    p = _num(c.get("p_paired", c.get("p")))
    return "reproduced" if p is not None and p < alpha and np.sign(c["diff"]) == sign else "not reproduced"


def _directional_verdict(c: dict | None, sign: int, alpha: float) -> tuple[str, int | None]:
    """The verdict on one comparison, and the seeds an inconclusive one would need."""
    if c is None or pd.isna(c.get("diff")):
        return NOT_TESTED, None
    p = _num(c.get("p_adjusted", c.get("p")))
    if p is not None and p < alpha:
        return (SUPPORTED if np.sign(c["diff"]) == sign else CONTRADICTED), None
    return _undecided(c["diff"], c, alpha, True, against=np.sign(c["diff"]) == -sign)


def _describe(c: dict) -> str:
    parts = [f"Δ = {c['diff']:+.4f}"]
    for key, label in (("p_adjusted", "p adj"), ("p_paired", "p plain")):
        if _num(c.get(key)) is not None:
            parts.append(f"{label} = {c[key]:.3g}")
    return ", ".join(parts) + f", n = {int(c['n'])}"


def _test_name(c: dict | None, metric: str, a: str, b: str, alpha: float) -> str:
    test = (c or {}).get("test", "corrected")
    kind = "corrected resampled t-test (Nadeau–Bengio)" if test == "corrected" else "paired t-test"
    adj = (c or {}).get("correction", "holm")
    return (f"{kind} of {metric}, {b} − {a}, two-sided, α = {alpha:g}"
            + (f", Holm-adjusted over the run's {int(c['family_size'])} tests" if c and adj == "holm" else ""))


def _directional(claim, study, stats, metric, a, b, sign: int, alpha: float, control: tuple[str, str] | None = None
                 ) -> Verdict:
    """Claim: B differs from A in direction `sign` (+1 higher, −1 lower). With `control` (A', B'), the same
    comparison for the no-KD student decides whether the effect belongs to KD or to the architecture."""
    c = _comparison(stats, metric, a, b)
    test = _test_name(c, metric, a, b, alpha)
    if c is None or pd.isna(c.get("diff")):
        return Verdict(claim, study, "not measured", test, NOT_TESTED)
    verdict, needs = _directional_verdict(c, sign, alpha)
    effect_of = "—"
    if control is not None and verdict == SUPPORTED:
        ctrl = _comparison(stats, metric, *control)
        vs_nokd = _comparison(stats, metric, "student_nokd", "student_kd")
        kd = _directional_verdict(vs_nokd, sign, alpha)[0] == SUPPORTED
        same = _directional_verdict(ctrl, sign, alpha)[0] == SUPPORTED
        if kd:
            effect_of = "KD (beyond the no-KD student)"
        elif ctrl is not None and vs_nokd is not None:
            effect_of = (f"{'the student architecture' if same else 'not shown to be KD'}: the no-KD student "
                         f"shows Δ = {ctrl['diff']:+.4f}{' too' if same else ''}; KD vs no-KD Δ = "
                         f"{vs_nokd['diff']:+.4f}, not significant")
    elif control is None and a == "student_nokd" and b == "student_kd" and verdict in (SUPPORTED, CONTRADICTED):
        effect_of = "KD (tested against the no-KD student)"
    return Verdict(claim, study, _describe(c), test, verdict, _old(c, sign, alpha), effect_of, needs)


def _noninferior(claim, study, stats, metric, a, b, alpha: float, control: tuple[str, str]) -> Verdict:
    """Claim: B is not worse than A by the metric's margin (one-sided test against the margin)."""
    c = _comparison(stats, metric, a, b)
    margin = None if c is None else _num(c.get("margin"))
    if c is None or margin is None:
        return Verdict(claim, study, "not measured or no margin set", f"non-inferiority of {metric} (set "
                       f"stats.margins.{metric})", NOT_TESTED)
    test = (f"non-inferiority: one-sided {'corrected ' if c.get('test') == 'corrected' else ''}t-test of "
            f"{b} − {a} against the margin {margin:g}, α = {alpha:g}, Holm-adjusted")
    found = c.get("margin_verdict")
    gain = c["diff"] * c.get("direction", 1)
    needs = None
    if found == "non-inferior":
        verdict = SUPPORTED
    elif found == "inferior":
        verdict = CONTRADICTED
    elif gain + margin <= 0:
        verdict = f"{INCONCLUSIVE} (observed Δ beyond the margin)"
    else:
        verdict, needs = _undecided(gain + margin, c, alpha, False,
                             family=int(c.get("family_size_noninferiority") or 1) if c.get("correction") == "holm"
                             else 1)
    control_c = _comparison(stats, metric, *control)
    effect_of = "—"
    if verdict == SUPPORTED and control_c is not None and control_c.get("margin_verdict") == "non-inferior":
        effect_of = "the student architecture: the no-KD student is non-inferior too"
    elif verdict == SUPPORTED:
        effect_of = "KD (the no-KD student is not shown non-inferior)"
    p_plain = _num(c.get("p_paired"))
    old = ("reproduced (no significant difference, read as no degradation)" if p_plain is None or p_plain >= alpha
           else "not reproduced")
    ours = _describe(c) + (f", p non-inferiority adj = {c['p_noninferiority_adjusted']:.3g}"
                           if _num(c.get("p_noninferiority_adjusted")) is not None else "")
    return Verdict(claim, study, ours, test, verdict, old, effect_of, needs)


def _threshold(claim, study, values: np.ndarray | None, threshold: float, what: str, ratio: float,
               alpha: float) -> tuple[Verdict, float | None]:
    """Claim: the mean of `values` over seeds exceeds `threshold`; one-sided one-sample t-test with the
    variance factor 1/n + ratio. Returns the verdict and its p-value (for the adjustment across claims)."""
    corrected = " corrected" if ratio > 0 else ""
    test = f"one-sided{corrected} t-test of the mean over seeds of {what} > {threshold:g}, α = {alpha:g}"
    if values is None or len(values) == 0 or np.all(np.isnan(values)):
        return Verdict(claim, study, "not measured", test, NOT_TESTED), None
    v = values[~np.isnan(values)]
    m, n = float(v.mean()), len(v)
    old = "reproduced" if m > threshold else "not reproduced"
    ours = f"{m:.3f} (n = {n})"
    sd = float(v.std(ddof=1)) if n > 1 else 0.0
    if sd == 0:  # deterministic over seeds (e.g. parameter counts): decided by the value
        return Verdict(claim, study, ours + ", constant over seeds", test + " (constant: decided by value)",
                       SUPPORTED if m > threshold else CONTRADICTED, old), None
    if n < 3:
        return Verdict(claim, study, ours, test, f"{INCONCLUSIVE} (fewer than 3 seeds)", old), None
    t = (m - threshold) / (sd * np.sqrt(variance_factor(n, ratio)))
    p = float(st.t.sf(t, n - 1))
    return Verdict(claim, study, ours + f", p = {p:.3g}", test, "", old), p


def _decide_thresholds(pending: list[tuple[Verdict, float | None, float, float, float, int]], alpha: float) -> None:
    """Holm over the threshold claims of one run; contradicted when significantly below the threshold."""
    adjusted = holm([np.nan if p is None else p for _, p, *_ in pending])
    below = holm([np.nan if p is None else 1 - p for _, p, *_ in pending])
    for (v, p, effect, sd, ratio, n_run), p_up, p_down in zip(pending, adjusted, below):
        if p is None:
            continue
        v.test += ", Holm-adjusted over the threshold claims"
        if p_up < alpha:
            v.verdict = SUPPORTED
        elif p_down < alpha:
            v.verdict = CONTRADICTED
        else:
            m = sum(p is not None for _, p, *_ in pending)
            n = seeds_needed(abs(effect), sd, ratio, alpha / m, 0.8, two_sided=False)
            v.seeds_needed = n
            v.verdict = (f"{INCONCLUSIVE} (underpowered, needs ≈ {n} seeds at α/{m}; this run has {n_run})"
                         if n is not None else
                         f"{INCONCLUSIVE} (no number of seeds decides it at this variance)")


def claims_for_run(metrics: pd.DataFrame, stats: pd.DataFrame | None, alpha: float,
                   test_train_ratio: float = 0.0) -> list[Verdict]:
    """The study's qualitative claims, checked on one run (one dataset and pair, over seeds). On a regression the
    accuracy claims are checked on R² (the headline metric) and the calibration claim does not apply."""
    def col(model, metric):
        rows = metrics[metrics.model == model]
        return rows[metric].to_numpy(float) if metric in rows else None

    nokd_kd = ("student_nokd", "student_kd")
    p_metric = headline(metrics.columns)
    regression = p_metric == "r2"
    more = "has a higher R² than" if regression else "more accurate than"
    named = headline_name(p_metric)
    verdicts = [
        _directional(f"KD student {more} the same student without KD",
                     "accuracy 95.2 vs 92.1 % (classification)" if regression else "95.2 vs 92.1 %", stats,
                     p_metric, *nokd_kd, +1, alpha),
        _noninferior(f"KD student keeps the teacher's {named} (no degradation beyond the margin)",
                     "“without significant performance degradation”", stats, p_metric, "teacher", "student_kd",
                     alpha, ("teacher", "student_nokd")),
        _directional("KD student's explanations closer to the teacher's than without KD", "cosine 0.88 vs 0.64",
                     stats, "cosine", *nokd_kd, +1, alpha),
        _directional("KD student more stable than without KD", "stability 0.91 vs 0.80", stats, "stability",
                     *nokd_kd, +1, alpha),
        _directional("KD student more stable than the teacher", "stability 0.91 vs 0.88", stats, "stability",
                     "teacher", "student_kd", +1, alpha, control=("teacher", "student_nokd")),
        Verdict("KD improves calibration (lower ECE than without KD)", "ECE improved by 2.3 %",
                "not applicable: a regression has no class probabilities", "—", NOT_TESTED) if regression else
        _directional("KD improves calibration (lower ECE than without KD)", "ECE improved by 2.3 %", stats, "ece",
                     *nokd_kd, -1, alpha),
    ]
    acc_t, acc_s = col("teacher", p_metric), col("student_kd", p_metric)
    retention = None if acc_t is None or acc_s is None else acc_s / acc_t
    specs = [
        (f"KD student keeps ≥ 95 % of the teacher's {named}", "retention 95–98 %", retention, 0.95,
         f"student_kd / teacher {named}", test_train_ratio),
        # Parameter counts and latencies do not estimate generalization: no re-split correction.
        ("parameters reduced by more than 60 %", "PRR 72 %", col("student_kd", "prr"), 0.6, "PRR of the KD student",
         0.0),
        ("CPU inference latency reduced by more than 60 %", "−64 % (12.8 → 4.6 ms)",
         col("student_kd", "latency_reduction"), 0.6, "latency reduction at batch 1", 0.0),
    ]
    pending = []
    for claim, study, values, threshold, what, ratio in specs:
        v, p = _threshold(claim, study, values, threshold, what, ratio, alpha)
        clean = None if values is None else values[~np.isnan(values)]
        sd = float(clean.std(ddof=1)) if clean is not None and len(clean) > 1 else 0.0
        effect = float(clean.mean() - threshold) if clean is not None and len(clean) else 0.0
        pending.append((v, p, effect, sd, ratio, 0 if clean is None else len(clean)))
        verdicts.append(v)
    _decide_thresholds(pending, alpha)
    return verdicts


def within_ci(values: np.ndarray, target: float, confidence: float = 0.95,
              test_train_ratio: float = 0.0) -> tuple[bool | None, str]:
    """Is `target` inside the t-based confidence interval of the mean of `values` (variance factor
    1/n + test_train_ratio: the corrected interval for re-split seeds)?"""
    interval = mean_interval(values, confidence, test_train_ratio)
    if interval is None:
        return None, "fewer than 2 seeds"
    low, high = interval
    return bool(low <= target <= high), f"[{low:.3f}, {high:.3f}]"


def tau_claim(points: pd.DataFrame) -> Verdict:
    """'τ between 3 and 5 works best': on a sweep over τ, the τ with the best mean validation accuracy of
    the KD student (per dataset/pair and α) must lie in [3, 5]."""
    claim, study = "τ between 3 and 5 gives the best KD student", "τ ∈ [3, 5]"
    test = ("per dataset/pair/α with ≥ 3 τ values: argmax over τ of mean validation accuracy ∈ [3, 5] in every "
            "group (a selection, not a significance test)")
    kd = points[points.model == "student_kd"] if "model" in points else points
    groups = [g for _, g in kd.groupby(["dataset", "pair", "alpha"]) if g.tau.nunique() >= 3] if len(kd) else []
    if not groups:
        return Verdict(claim, study, "no τ sweep in these runs", test + " (run kdx run -m kd.tau=1,2,3,4,5,8)",
                       NOT_TESTED)
    best = [float(g.loc[g[f"val_{headline(g.columns)}"].idxmax(), "tau"]) for g in groups]
    ok = all(3 <= b <= 5 for b in best)
    return Verdict(claim, study, "best τ: " + ", ".join(f"{b:g}" for b in best), test,
                   SUPPORTED if ok else CONTRADICTED, "reproduced" if ok else "not reproduced")
