"""Every statistic of kdx.analysis.stats and kdx.analysis.claims against an independent reference (scipy,
statsmodels, the scikit-learn documentation's corrected t-test, hand-computed cases)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower
from statsmodels.stats.weightstats import ttost_paired

from kdx.analysis.claims import claims_for_run
from kdx.analysis.console import _claim_line
from kdx.analysis.stats import (
    StatsSettings,
    compare_models,
    holm,
    minimum_detectable_difference,
    paired_comparison,
    seeds_needed,
    t_power,
)

A = np.array([0.850, 0.842, 0.861, 0.848, 0.855])
B = np.array([0.858, 0.846, 0.866, 0.851, 0.863])
RATIO = 0.15 / 0.70


def _sklearn_doc_corrected_ttest(differences, df, n_train, n_test):
    """The corrected t-test as the scikit-learn example 'Statistical comparison of models using grid search'
    writes it (corrected_std and compute_corrected_ttest; its p-value is right-tailed)."""
    kr = len(differences)
    corrected_var = np.var(differences, ddof=1) * (1 / kr + n_test / n_train)
    t_stat = np.mean(differences) / np.sqrt(corrected_var)
    return t_stat, st.t.sf(np.abs(t_stat), df)


def test_corrected_t_by_hand_and_against_the_sklearn_example():
    r = paired_comparison(A, B, test_train_ratio=RATIO)
    d = B - A
    # Hand: variance factor 1/5 + 15/70 = 0.4143 (plain: 0.2), t shrinks by sqrt(0.2/0.4143).
    assert r["variance_factor"] == pytest.approx(0.2 + 15 / 70)
    t_hand = d.mean() / (d.std(ddof=1) * math.sqrt(0.2 + 15 / 70))
    assert r["t_corrected"] == pytest.approx(t_hand)
    assert r["t_corrected"] / r["t_paired"] == pytest.approx(math.sqrt(0.2 / (0.2 + 15 / 70)))
    t_doc, p_doc_one_sided = _sklearn_doc_corrected_ttest(d, 4, n_train=700, n_test=150)
    assert r["t_corrected"] == pytest.approx(t_doc) and r["p_corrected"] == pytest.approx(2 * p_doc_one_sided)
    assert r["t"] == r["t_corrected"] and r["p"] == r["p_corrected"]
    # The plain paired test is scipy's, and the chosen test switches the headline p and the interval.
    t, p = st.ttest_rel(B, A)
    assert r["t_paired"] == pytest.approx(t) and r["p_paired"] == pytest.approx(p)
    plain = paired_comparison(A, B, test_train_ratio=RATIO, test="paired")
    assert plain["p"] == pytest.approx(p) and plain["p_corrected"] == pytest.approx(r["p_corrected"])
    half = st.t.ppf(0.975, 4) * d.std(ddof=1) * math.sqrt(0.2 + 15 / 70)
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((d.mean() - half, d.mean() + half))
    lo, hi = st.t.interval(0.95, 4, loc=d.mean(), scale=d.std(ddof=1) / math.sqrt(5))
    assert (plain["ci_low"], plain["ci_high"]) == pytest.approx((lo, hi))


def test_wilcoxon_is_scipys():
    r = paired_comparison(A, B, test_train_ratio=RATIO)
    assert r["p_wilcoxon"] == pytest.approx(st.wilcoxon(B - A).pvalue)


def test_tost_and_noninferiority_against_statsmodels():
    # statsmodels tests x1 − x2 ∈ (low, upp) with the plain paired variance: compare with test=paired.
    for margin in (0.005, 0.01, 0.03):
        r = paired_comparison(A, B, margin=margin, test="paired")
        p_tost, lower, upper = ttost_paired(B, A, -margin, margin)
        assert r["p_equivalence"] == pytest.approx(p_tost)
        assert r["p_noninferiority"] == pytest.approx(lower[1])  # H0: B − A ≤ −margin
    # Lower is better (ECE): non-inferiority looks at A − B.
    r = paired_comparison(B, A, margin=0.01, test="paired", higher_is_better=False)
    assert r["p_noninferiority"] == pytest.approx(ttost_paired(A, B, -0.01, 0.01)[2][1])  # H0: A − B ≥ margin
    # Corrected variance: the same one-sided test with the wider standard error, computed by hand.
    c = paired_comparison(A, B, test_train_ratio=RATIO, margin=0.01)
    d = B - A
    se = d.std(ddof=1) * math.sqrt(0.2 + RATIO)
    assert c["p_noninferiority"] == pytest.approx(st.t.sf((d.mean() + 0.01) / se, 4))
    assert c["p_inferiority"] == pytest.approx(1 - c["p_noninferiority"])


def test_holm_against_statsmodels():
    rng = np.random.default_rng(3)
    for _ in range(20):
        p = rng.uniform(0, 0.2, size=rng.integers(1, 15))
        assert holm(p) == pytest.approx(multipletests(p, method="holm")[1])
    with_nan = np.array([0.01, np.nan, 0.04, 0.03])
    out = holm(with_nan)
    assert np.isnan(out[1]) and out[[0, 2, 3]] == pytest.approx(multipletests([0.01, 0.04, 0.03], method="holm")[1])


def test_mde_against_statsmodels_power():
    for n in (3, 5, 10, 20):
        d = TTestPower().solve_power(nobs=n, alpha=0.05, power=0.8, alternative="two-sided")
        assert minimum_detectable_difference(0.02, n) == pytest.approx(d * 0.02, rel=1e-6)
        d1 = TTestPower().solve_power(nobs=n, alpha=0.05, power=0.8, alternative="larger")
        assert minimum_detectable_difference(0.02, n, two_sided=False) == pytest.approx(d1 * 0.02, rel=1e-5)
    # Corrected: the power at the MDE is 80 % under the corrected standard error.
    mde = minimum_detectable_difference(0.02, 5, RATIO)
    assert t_power(mde / (0.02 * math.sqrt(0.2 + RATIO)), 4, 0.05) == pytest.approx(0.8, abs=1e-6)
    r = paired_comparison(A, B, test_train_ratio=RATIO)
    assert r["mde"] == pytest.approx(minimum_detectable_difference(np.std(B - A, ddof=1), 5, RATIO))


def test_seeds_needed_is_the_smallest_n_with_enough_power_and_knows_the_corrected_floor():
    n = seeds_needed(0.5, 1.0)
    power = lambda k: TTestPower().power(effect_size=0.5, nobs=k, alpha=0.05)  # noqa: E731
    assert power(n) >= 0.8 > power(n - 1)
    # Re-split seeds: the corrected variance never falls below sd²·n_test/n_train. An effect of 0.5 sd then
    # has noncentrality at most 0.5/sqrt(0.214) ≈ 1.08 < 2.8: no number of seeds reaches 80 % power.
    assert seeds_needed(0.5, 1.0, RATIO) is None
    big = seeds_needed(3.0, 1.0, RATIO)
    assert big is not None and t_power(3.0 / math.sqrt(1 / big + RATIO), big - 1, 0.05) >= 0.8
    assert seeds_needed(0.0, 1.0) is None and seeds_needed(0.1, 0.0) is None


def test_degenerate_cases_give_reasons_never_inf_or_nan():
    cases = [(np.ones(4), np.ones(4)), (np.array([1.0, 2, 3]), np.array([2.0, 3, 4])), (np.ones(2), np.ones(2) * 2)]
    for a, b in cases:
        r = paired_comparison(a, b, test_train_ratio=RATIO, margin=0.01)
        assert r["note"]
        for key, value in r.items():
            assert not (isinstance(value, float) and not math.isfinite(value)), key


def _metrics(kd_shift: float, nokd_shift: float, noise: float = 0.004, seeds: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for s in range(seeds):
        base = 0.85 + rng.normal(0, 0.01)
        for model, shift in (("teacher", 0.0), ("student_nokd", nokd_shift), ("student_kd", kd_shift)):
            rows.append({"seed": s, "model": model, "accuracy": base + shift + rng.normal(0, noise),
                         "stability": 0.8 + shift + rng.normal(0, noise)})
    return pd.DataFrame(rows)


def test_compare_models_adjusts_over_the_family_and_judges_margins():
    m = _metrics(kd_shift=0.03, nokd_shift=0.0)
    settings = StatsSettings(margins={"accuracy": 0.01})
    out = compare_models(m, settings, RATIO)
    assert out.family_size.iloc[0] == out.p.notna().sum() == 6
    assert out.p_adjusted.to_numpy() == pytest.approx(multipletests(out.p, method="holm")[1])
    assert (out.significant == (out.p_adjusted < 0.05)).all()
    kd = out[(out.metric == "accuracy") & (out.a == "teacher") & (out.b == "student_kd")].iloc[0]
    assert kd.margin_verdict == "non-inferior"
    worse = compare_models(_metrics(kd_shift=-0.05, nokd_shift=0.0), settings, RATIO)
    row = worse[(worse.metric == "accuracy") & (worse.a == "teacher") & (worse.b == "student_kd")].iloc[0]
    assert row.margin_verdict == "inferior"
    close = compare_models(_metrics(kd_shift=-0.005, nokd_shift=0.0, noise=0.02), settings, RATIO)
    row = close[(close.metric == "accuracy") & (close.a == "teacher") & (close.b == "student_kd")].iloc[0]
    assert row.margin_verdict == "inconclusive"
    none = compare_models(m, StatsSettings(correction="none"), RATIO)
    assert none.p_adjusted.to_numpy() == pytest.approx(none.p.to_numpy())


def _verdict(verdicts, start):
    return next(v for v in verdicts if v.claim.startswith(start))


def test_claim_verdicts_supported_contradicted_inconclusive_and_the_architecture_control():
    settings = StatsSettings(margins={"accuracy": 0.01})
    # Both students gain the same stability over the teacher: the effect belongs to the architecture.
    m = _metrics(kd_shift=0.05, nokd_shift=0.05, noise=0.002)
    verdicts = claims_for_run(m, compare_models(m, settings, RATIO), 0.05, RATIO)
    stable = _verdict(verdicts, "KD student more stable than the teacher")
    assert stable.verdict == "supported" and "architecture" in stable.effect_of
    assert _verdict(verdicts, "KD student more stable than without KD").verdict.startswith("inconclusive")
    # KD gains over the no-KD student: supported and attributed to KD; the reverse is contradicted.
    m = _metrics(kd_shift=0.05, nokd_shift=0.0, noise=0.002)
    v = _verdict(claims_for_run(m, compare_models(m, settings, RATIO), 0.05, RATIO), "KD student more accurate")
    assert v.verdict == "supported" and v.old_verdict == "reproduced"
    m = _metrics(kd_shift=-0.05, nokd_shift=0.0, noise=0.002)
    v = _verdict(claims_for_run(m, compare_models(m, settings, RATIO), 0.05, RATIO), "KD student more accurate")
    assert v.verdict == "contradicted"
    # Small noisy effect: inconclusive with the seeds it would need (or why none would do).
    m = _metrics(kd_shift=0.004, nokd_shift=0.0, noise=0.002)
    v = _verdict(claims_for_run(m, compare_models(m, settings, 0.0), 0.05, 0.0), "KD student more accurate")
    if v.verdict != "supported":
        assert "≈" in v.verdict and "seeds" in v.verdict
    # The seeds an inconclusive verdict needs are a field (the console reads it, not the text); none otherwise.
    m = _metrics(kd_shift=0.01, nokd_shift=0.0, noise=0.005)
    v = _verdict(claims_for_run(m, compare_models(m, settings, 0.0), 0.05, 0.0), "KD student more accurate")
    assert v.verdict.startswith("inconclusive (underpowered") and v.seeds_needed > 5
    assert f"needs ≈ {v.seeds_needed} seeds" in v.verdict
    assert f"needs ≈ {v.seeds_needed} seeds, has 5" in _claim_line(v, 5)
    # with the corrected test's variance floor no number of seeds decides it: none, and the console says so
    v = _verdict(claims_for_run(m, compare_models(m, settings, RATIO), 0.05, RATIO), "KD student more accurate")
    assert v.seeds_needed is None and "more seeds cannot decide it" in _claim_line(v, 5)
    assert all(v.seeds_needed is None for v in verdicts if not v.verdict.startswith("inconclusive"))
    # A non-significant difference is no evidence of "no degradation": the old verdict said reproduced.
    m = _metrics(kd_shift=-0.005, nokd_shift=0.0, noise=0.02)
    keeps = _verdict(claims_for_run(m, compare_models(m, settings, RATIO), 0.05, RATIO), "KD student keeps the")
    assert keeps.verdict.startswith("inconclusive") and keeps.old_verdict.startswith("reproduced")
