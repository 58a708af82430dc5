"""XGBoost, LightGBM and CatBoost teachers: training, kdx's reading of their trees, exact TreeSHAP in the
shared game, counts, early stopping, the missing-extra message, and a whole run."""

import numpy as np
import pytest
from conftest import TINY, make_config, nonlinear_task

from kdx.errors import ConfigError, MissingExtra
from kdx.measure.explain import attributions, explain, output_matrix
from kdx.measure.shapley import exact_shapley
from kdx.models import boosting
from kdx.run.building import build_model

LIBRARIES = ("xgboost", "lightgbm", "catboost")
pytestmark = pytest.mark.skipif(not all(boosting.installed(m) for m in LIBRARIES),
                                reason="kdx[boosters] is not installed")


def _fit(library: str, n_classes: int, **overrides):
    X, y = nonlinear_task(n_classes)
    cfg = make_config(f"teacher={library}", "teacher.n_estimators=30",
                      *[f"teacher.{k}={v}" for k, v in overrides.items()])
    return build_model("teacher", cfg.teacher, 0, "cpu", cfg.limits).fit(X[:400], y[:400], X[400:], y[400:],
                                                                         n_classes), X, y


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("library", LIBRARIES)
def test_trains_deterministically_and_kdx_reads_its_trees(library, n_classes):
    model, X, y = _fit(library, n_classes)
    again, _, _ = _fit(library, n_classes)
    logits = model.logits(X)
    assert logits.shape == (len(X), n_classes)
    assert np.array_equal(logits, again.logits(X))  # same seed, same model
    assert (model.predict(X[400:]) == y[400:]).mean() > 0.6
    # kdx's representation reproduces the library's raw margins (XGBoost sums in float32)
    np.testing.assert_allclose(model.ensemble().logits(X), logits, atol=1e-5)
    assert model.history_["rounds"] == 30 and not model.history_["early_stopped"]
    assert model.n_params() > 0 and model.flops() > 30 and model.size_bytes() > 0


@pytest.mark.parametrize("library", LIBRARIES)
def test_treeshap_is_the_exact_interventional_shapley_value(library):
    """Interventional TreeSHAP = the Shapley values of the game kdx plays with every model (coalitions
    filled in from the background rows), computed here by enumerating all 2^5 coalitions."""
    model, X, _ = _fit(library, 3)
    A, per_class = output_matrix(3, "centred")
    classes = model.predict(X[:15])
    phi, name = attributions(model, X[:15], X[400:430], A, per_class, classes)
    assert name == "TreeExplainer (interventional, per class)"
    weights = A[:, classes].T
    reference = exact_shapley(model.logits, X[:15], X[400:430], weights)
    np.testing.assert_allclose(phi, reference, atol=1e-5)
    assert explain(model, X[:15], X[400:430], A, per_class, classes).additivity_error < 1e-5


def _native_path_dependent(model, X):
    """The library's own (path-dependent) TreeSHAP of the binary margin, bias column dropped."""
    if model.library == "xgboost":
        import xgboost as xgb

        return model.model_.predict(xgb.DMatrix(X), pred_contribs=True)[:, :-1]
    return model.model_.predict(X, pred_contrib=True)[:, :-1]


@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_kdx_trees_give_the_librarys_own_treeshap(library):
    """The same trees through shap's path-dependent TreeSHAP equal the library's native SHAP: kdx reads the
    trees (splits, leaves, covers) as the library holds them. (Not CatBoost: its symmetric trees have leaves
    no training row reaches, where path-dependent TreeSHAP is undefined and shap refuses; kdx's interventional
    values for CatBoost are checked exactly above, and its reading of the trees by the predictions.)"""
    import shap

    model, X, _ = _fit(library, 2)
    ensemble = model.ensemble()
    ours = shap.TreeExplainer(ensemble.shap_model(0), feature_perturbation="tree_path_dependent",
                              model_output="raw").shap_values(X[:50].astype(np.float64), check_additivity=False)
    np.testing.assert_allclose(ours, _native_path_dependent(model, X[:50]), atol=2e-4)


@pytest.mark.parametrize("library", LIBRARIES)
def test_early_stopping_uses_validation_and_is_off_by_default(library):
    X, y = nonlinear_task(2, seed=1)
    y_noisy = np.where(np.random.default_rng(0).random(len(y)) < 0.3, 1 - y, y)  # overfits quickly
    cfg = make_config(f"teacher={library}", "teacher.n_estimators=400", "teacher.early_stopping_rounds=5",
                      "teacher.learning_rate=0.3")
    model = build_model("teacher", cfg.teacher, 0, "cpu", cfg.limits).fit(X[:400], y_noisy[:400], X[400:],
                                                                          y_noisy[400:], 2)
    assert model.history_["early_stopped"] and model.history_["rounds"] < 400
    np.testing.assert_allclose(model.ensemble().logits(X), model.logits(X), atol=1e-5)
    assert make_config(f"teacher={library}").teacher.early_stopping_rounds is None


def test_a_missing_library_is_one_line_naming_the_extra(monkeypatch, tmp_path):
    from kdx.run.protocol import run

    monkeypatch.setattr(boosting, "installed", lambda module: module != "lightgbm")
    with pytest.raises(MissingExtra, match=r"^teacher: teacher=lightgbm needs lightgbm: pip install "
                                           r"'kdx\[boosters\]' \(or make install\)$"):
        run(make_config("teacher=lightgbm", *TINY), tmp_path)


def test_gradient_objectives_refuse_a_booster_teacher(tmp_path):
    from kdx.run.protocol import run

    with pytest.raises(ConfigError, match="xgboost teacher"):
        run(make_config("teacher=xgboost", "kd=jacobian", *TINY), tmp_path)


@pytest.mark.parametrize("library,student", [("xgboost", "tree"), ("catboost", "shallow_mlp")])
def test_a_run_with_a_booster_teacher(library, student, tmp_path):
    from kdx.run.protocol import run

    cfg = make_config("experiment=wine_quality", f"teacher={library}", f"student={student}", *TINY,
                      "explain.rows=30", "explain.background=20", "explain.stability_rows=5",
                      "explain.stability_draws=2", "profile.repeats=5", "profile.warmup=1")
    result = run(cfg, tmp_path)
    m = result.metrics.set_index("model")
    assert m.loc["teacher", "explainer"] == "TreeExplainer (interventional, per class)"
    assert m.additivity_error.max() < 1e-4
    assert -1 <= m.loc["student_kd", "cosine"] <= 1 and m.loc["teacher", "params"] > m.loc["student_kd", "params"]
    assert m.onnx_parity.max() <= 1e-5  # the booster teacher exports to ONNX too


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("student", ["lightgbm_small", "xgboost_small"])
def test_a_booster_student_regresses_the_teachers_logits(student, n_classes):
    """kd_fit=logits with α = 0 and τ = 1: the student's centred margins fit the teacher's centred logits
    (squared error, so closer than the teacher's own spread by far) and kdx reads its trees exactly; the no-KD
    twin is the library's classifier on the hard labels. Its targets are the soft targets' centred logits."""
    from kdx.distill.objectives import Hinton
    from kdx.distill.objectives.base import TeacherSignals
    from kdx.models.soft_targets import logit_targets

    X, y = nonlinear_task(n_classes)
    teacher = np.column_stack([X[:, 0] * k for k in range(n_classes)]).astype(np.float32)
    cfg = make_config(f"student={student}", "student.n_estimators=60")
    kd = build_model("student", cfg.student, 0, "cpu", cfg.limits).fit(
        X, y, X, y, n_classes, objective=Hinton(1.0, 0.0), signals=TeacherSignals({"teacher_logits": teacher}))
    z = kd.logits(X)
    centred = teacher - teacher.mean(1, keepdims=True)
    error = np.abs((z - z.mean(1, keepdims=True)) - centred).mean()
    assert error < 0.1 * np.abs(centred).mean()
    np.testing.assert_allclose(kd.ensemble().logits(X), z, atol=1e-5)
    nokd = build_model("student", cfg.student, 0, "cpu", cfg.limits).fit(X, y, X, y, n_classes)
    assert (nokd.predict(X) == y).mean() > 0.7
    q = np.full((2, 3), 0.25)
    q[0] = [0.5, 0.25, 0.25]
    t = logit_targets(q / q.sum(1, keepdims=True))
    np.testing.assert_allclose(t[0], np.log([0.5, 0.25, 0.25]) - np.log([0.5, 0.25, 0.25]).mean())
    np.testing.assert_allclose(t[1], 0.0, atol=1e-12)
    binary = logit_targets(np.array([[0.2, 0.8]]))
    np.testing.assert_allclose(binary, [[np.log(4.0)]])


def test_catboost_cannot_fit_logits():
    cfg = make_config("teacher=catboost", "+teacher.kd_fit=logits")
    with pytest.raises(ConfigError, match="kd_fit=logits needs a booster that can regress margins"):
        build_model("teacher", cfg.teacher, 0, "cpu", cfg.limits)


def test_a_run_with_a_booster_student_exports_it(tmp_path):
    from kdx.run.protocol import run

    cfg = make_config("experiment=wine_quality", "teacher=xgboost", "student=lightgbm_small", "augment=spunge",
                      "augment.size_factor=1", *TINY, "explain.rows=30", "explain.background=20",
                      "explain.stability_rows=5", "explain.stability_draws=2", "profile.repeats=5",
                      "profile.warmup=1")
    m = run(cfg, tmp_path).metrics.set_index("model")
    assert m.loc["student_kd", "generated_rows"] > 0
    assert m.loc["student_kd", "explainer"].startswith("TreeExplainer")
    assert m.onnx_parity.max() <= 1e-5  # the distilled booster exports with the preprocessing inside
