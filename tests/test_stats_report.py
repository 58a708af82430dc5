import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from kdx.analysis.claims import tau_claim
from kdx.analysis.stats import StatsSettings, compare_models, paired_comparison
from kdx.analysis.tradeoff import add_objective_terms, objective, pareto_mask


def test_paired_comparison_against_scipy_and_hand_values():
    a = np.array([0.80, 0.82, 0.79, 0.81, 0.83])
    b = np.array([0.84, 0.83, 0.82, 0.86, 0.85])
    r = paired_comparison(a, b)
    t, p = st.ttest_rel(b, a)
    assert r["t"] == pytest.approx(t) and r["p"] == pytest.approx(p)
    diff = b - a
    assert r["d_z"] == pytest.approx(diff.mean() / diff.std(ddof=1))
    s_pooled = np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
    assert r["cohens_d"] == pytest.approx((b.mean() - a.mean()) / s_pooled)
    lo, hi = st.t.interval(0.95, 4, loc=diff.mean(), scale=diff.std(ddof=1) / np.sqrt(5))
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((lo, hi))
    # Hand case: differences 1, 2, 3 → mean 2, sd 1, d_z 2, t = 2 / (1/√3) = 2√3.
    h = paired_comparison(np.zeros(3), np.array([1.0, 2.0, 3.0]))
    assert h["d_z"] == pytest.approx(2.0) and h["t"] == pytest.approx(2 * np.sqrt(3))
    assert "low power" in h["note"]


def test_zero_variance_gives_reasons_not_inf():
    r = paired_comparison(np.array([1.0, 2.0, 3.0]), np.array([2.0, 3.0, 4.0]))
    assert r["t"] is None and r["p"] is None and r["d_z"] is None and "sd 0" in r["note"]
    assert r["diff"] == 1.0 and r["cohens_d"] == pytest.approx(1.0)
    same = paired_comparison(np.ones(4), np.ones(4))
    assert same["cohens_d"] is None and "constant" in same["note"]
    for few in (np.array([1.0]), np.array([1.0, 2.0])):
        one = paired_comparison(few, few + np.arange(len(few)))
        assert one["p"] is None and one["mde"] is None and "fewer than 3" in one["note"]
    for value in (*r.values(), *same.values()):
        assert not (isinstance(value, float) and not np.isfinite(value))


def test_compare_models_marks_significance():
    rows = [{"seed": s, "model": m, "accuracy": base + 0.001 * s} for s in range(5)
            for m, base in (("teacher", 0.9), ("student_nokd", 0.8), ("student_kd", 0.85))]
    rows[-1]["accuracy"] += 0.0005
    out = compare_models(pd.DataFrame(rows), StatsSettings(alpha=0.05))
    kd = out[(out.a == "student_nokd") & (out.b == "student_kd")].iloc[0]
    assert kd["diff"] == pytest.approx(0.0501) and kd["significant"]


def test_pareto_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(20):
        pts = rng.integers(0, 5, size=(30, 3)).astype(float)  # ties on purpose
        brute = [not any(np.all(q >= p) and np.any(q > p) for q in pts) for p in pts]
        assert pareto_mask(pts).tolist() == brute
    with_nan = np.array([[1.0, 1.0], [np.nan, 5.0], [0.0, 0.0]])
    assert pareto_mask(with_nan).tolist() == [True, False, False]


def test_objective_on_a_hand_example():
    m = pd.DataFrame([
        {"seed": 0, "model": "teacher", "accuracy": 0.90, "latency_ms": 2.0, "params": 1000, "cosine": np.nan},
        {"seed": 0, "model": "student_kd", "accuracy": 0.88, "latency_ms": 0.5, "params": 100, "cosine": 0.8},
    ])
    scored = objective(add_objective_terms(m, ("latency_ms", "params")), {"p": {"a_P": 2.0, "b_C": 1.0, "g_I": 0.5}})
    s = scored.set_index("model")
    assert s.loc["teacher", "C"] == 1.0 and s.loc["teacher", "I"] == 1.0
    assert s.loc["student_kd", "C"] == pytest.approx((0.25 + 0.1) / 2)
    assert s.loc["student_kd", "J_p"] == pytest.approx(2 * 0.88 - 0.175 + 0.5 * 0.8)
    assert s.loc["teacher", "J_p"] == pytest.approx(2 * 0.90 - 1 + 0.5)


def test_tau_claim_decision():
    rows = [{"dataset": "d", "pair": "p", "alpha": 0.5, "model": "student_kd", "tau": t, "val_accuracy": acc}
            for t, acc in ((1, 0.80), (3, 0.84), (4, 0.85), (8, 0.82))]
    assert tau_claim(pd.DataFrame(rows)).verdict == "supported"
    rows[0]["val_accuracy"] = 0.9
    assert tau_claim(pd.DataFrame(rows)).verdict == "contradicted"
    assert tau_claim(pd.DataFrame(rows[:2])).verdict == "not tested"


def test_report_from_a_real_run_has_every_table_and_figure(tmp_path, compose_cfg):
    from kdx.analysis.report import write_report
    from kdx.run.protocol import run

    cfg = compose_cfg("experiment=breast_cancer", "+smoke=on", "seeds=[0,1,2]")
    run(cfg, tmp_path)
    target, collection = write_report(tmp_path)
    text = target.read_text()
    for heading in ("study's claims beside ours", "Table 2", "Table 3", "Efficiency", "Statistics",
                    "Composite objective", "Tuned on validation", "Best student per dataset, teacher and profile",
                    "Pareto-efficient", "Figures"):
        assert heading in text, heading
    for name in ("claims", "table2", "table3", "efficiency", "stats", "objective", "best_per_profile", "pareto",
                 "tuned"):
        assert (tmp_path / f"report_{name}.csv").is_file(), name
    figures = sorted(p.name for p in tmp_path.glob("*.png"))
    assert figures == ["fig3_attributions_" + tmp_path.name + ".png", "fig4_tradeoff.png"]
    assert not collection.missing
    stats = pd.read_csv(tmp_path / "stats.csv")
    assert {"accuracy", "cosine", "stability", "latency_ms"} <= set(stats.metric)
    best = pd.read_csv(tmp_path / "report_best_per_profile.csv")
    assert set(best.profile) == {"balanced", "accuracy", "efficiency", "interpretability"}


@pytest.mark.slow
def test_report_on_a_sweep_with_a_failed_job(tmp_path):
    sweep = tmp_path / "sweep"
    res = subprocess.run([sys.executable, "-m", "kdx", "run", "-m", "+smoke=on", "dataset=breast_cancer",
                          "teacher=gbt", "student=logreg", "seeds=[0,1]", "kd.tau=1,3,5", "kd.alpha=0.5,7",
                          f"hydra.sweep.dir={sweep}"], capture_output=True, text=True, timeout=600)
    assert res.returncode != 0 and "kd.alpha" in res.stderr
    assert not (sweep / "report.md").exists()  # Hydra's end-of-sweep callback never ran
    rep = subprocess.run([sys.executable, "-m", "kdx", "report", str(sweep)], capture_output=True, text=True,
                         timeout=600)
    assert rep.returncode == 0, rep.stderr
    text = (sweep / "report.md").read_text()
    assert "1 complete run(s) of 1 found" in text
    assert "job 1: failed before writing any result" in text
    assert "never ran" in text and "kd.tau=5" in text
    points = pd.read_csv(sweep / "report_points.csv")
    assert set(points.model) == {"teacher", "student_nokd", "student_kd"}


@pytest.mark.slow
def test_paper_study_preset_runs_three_pairs_and_reports(tmp_path):
    res = subprocess.run([sys.executable, "-m", "kdx", "run", "+study=paper", "+smoke=on",
                          f"hydra.sweep.dir={tmp_path}"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    datasets = sorted(json.loads((tmp_path / str(i) / "summary.json").read_text())["dataset"]["name"]
                      for i in range(3))
    assert datasets == ["adult", "breast_cancer", "wine_quality"]
    # The smoke preset draws no figures (seconds matter there); `kdx report` draws them afterwards.
    assert (tmp_path / "report.md").is_file() and not list(tmp_path.glob("*.png"))
    rep = subprocess.run([sys.executable, "-m", "kdx", "report", str(tmp_path)], capture_output=True, text=True,
                         timeout=600)
    assert rep.returncode == 0, rep.stderr
    assert (tmp_path / "fig4_tradeoff.png").is_file()


def test_objective_leaves_out_undefined_terms_for_every_row():
    m = pd.DataFrame([{"seed": 0, "model": "teacher", "accuracy": 0.90, "params": 1000},
                      {"seed": 0, "model": "student_kd", "accuracy": 0.88, "params": 100}])
    scored = objective(add_objective_terms(m, ("latency_ms", "params")), {"p": {"a_P": 1.0, "b_C": 1.0, "g_I": 5.0}})
    s = scored.set_index("model")
    assert np.isnan(s.loc["teacher", "I"])  # no attributions: I undefined for the teacher too
    assert s.loc["student_kd", "J_p"] == pytest.approx(0.88 - 0.1) and s.loc["teacher", "J_p"] == pytest.approx(-0.1)
