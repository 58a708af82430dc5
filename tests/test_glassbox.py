"""student=ebm (InterpretML's Explainable Boosting Machine, extra kdx[glassbox]): distilled by regressing the
teacher's logits, its terms read exactly into kdx's tree form (so exact TreeSHAP and ONNX export), a whole run."""

import numpy as np
import pytest
from conftest import TINY, make_config, nonlinear_task

from kdx.distill.objectives import Hinton
from kdx.distill.objectives.base import TeacherSignals
from kdx.errors import MissingExtra
from kdx.measure.explain import attributions, output_matrix
from kdx.measure.shapley import exact_shapley
from kdx.models import boosting
from kdx.run.building import build_model

pytestmark = pytest.mark.skipif(not boosting.installed("interpret"), reason="kdx[glassbox] is not installed")
QUICK = ("student=ebm", "student.max_rounds=150", "student.outer_bags=2", "student.interactions=2")


@pytest.mark.parametrize("n_classes", [2, 3])
def test_an_ebm_student_regresses_the_teachers_logits_and_kdx_reads_its_terms(n_classes):
    """kd_fit=logits with α = 0 and τ = 1: one EBM regressor per output fits the teacher's centred logits; the
    no-KD twin is InterpretML's classifier. kdx's tree form of every term gives the library's own predictions,
    rows lying exactly on a bin's cut point included (InterpretML puts x = cut in the upper bin)."""
    X, y = nonlinear_task(n_classes, n=500)
    teacher = np.column_stack([np.tanh(X[:, 0]) * k + X[:, 1] * X[:, 2] for k in range(n_classes)]).astype(np.float32)
    cfg = make_config(*QUICK)
    signals = TeacherSignals({"teacher_logits": teacher})
    kd = build_model("student", cfg.student, 0, "cpu", cfg.limits).fit(X, y, X, y, n_classes,
                                                                        objective=Hinton(1.0, 0.0), signals=signals)
    z = kd.logits(X)
    centred = teacher - teacher.mean(1, keepdims=True)
    assert np.abs((z - z.mean(1, keepdims=True)) - centred).mean() < 0.15 * np.abs(centred).mean()
    on_cuts = X[:60].copy()
    on_cuts[:, 0] = kd.model_[0].bins_[0][0][:60].astype(np.float32)  # float32 values of the cut points
    for rows in (X, on_cuts):
        np.testing.assert_allclose(kd.ensemble().logits(rows), kd.logits(rows), atol=1e-5)
    again = build_model("student", cfg.student, 0, "cpu", cfg.limits).fit(X, y, X, y, n_classes,
                                                                           objective=Hinton(1.0, 0.0), signals=signals)
    assert np.array_equal(again.logits(X), z)  # the same seed, the same model
    nokd = build_model("student", cfg.student, 0, "cpu", cfg.limits).fit(X, y, X, y, n_classes)
    assert (nokd.predict(X) == y).mean() > 0.7
    np.testing.assert_allclose(nokd.ensemble().logits(X), nokd.logits(X), atol=1e-5)
    # stored values: each term's table, each feature's cut points and the intercepts, per output
    tables = sum(s.size for m in kd.model_ for s in m.term_scores_)
    assert kd.n_params() > tables and kd.flops() > 0 and kd.size_bytes() > 0


def test_ebm_treeshap_is_the_exact_interventional_shapley_value():
    X, y = nonlinear_task(3, n=500)
    cfg = make_config(*QUICK)
    model = build_model("student", cfg.student, 0, "cpu", cfg.limits).fit(X[:400], y[:400], X[400:], y[400:], 3)
    A, per_class = output_matrix(3, "centred")
    classes = model.predict(X[:12])
    phi, name = attributions(model, X[:12], X[400:425], A, per_class, classes)
    assert name.startswith("TreeExplainer")
    np.testing.assert_allclose(phi, exact_shapley(model.logits, X[:12], X[400:425], A[:, classes].T), atol=1e-5)


def test_a_missing_interpret_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setattr(boosting, "installed", lambda module: module != "interpret")
    cfg = make_config("student=ebm")
    with pytest.raises(MissingExtra, match=r"student=ebm needs interpret: pip install 'kdx\[glassbox\]'"):
        build_model("student", cfg.student, 0, "cpu", cfg.limits)


def test_a_run_with_an_ebm_student_explains_and_exports_it(tmp_path):
    from kdx.run.protocol import run

    cfg = make_config("experiment=breast_cancer", *QUICK, *TINY, "explain.rows=30", "explain.background=20",
                      "explain.stability_rows=5", "explain.stability_draws=2", "profile.repeats=5",
                      "profile.warmup=1")
    m = run(cfg, tmp_path).metrics.set_index("model")
    for name in ("student_nokd", "student_kd"):
        assert m.loc[name, "accuracy"] > 0.85 and m.loc[name, "explainer"].startswith("TreeExplainer")
    if "onnx_parity" in m:  # kdx[deploy] installed: the EBM exports with the preprocessing inside
        assert m.onnx_parity.max() <= 1e-5
