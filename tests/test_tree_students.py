import numpy as np
import pytest
from scipy.special import softmax
from test_explain import exact_interventional_shapley

from kdx.distill.objectives.base import TeacherSignals
from kdx.distill.objectives.hinton import Hinton
from kdx.errors import ConfigError
from kdx.measure.explain import explain, output_matrix
from kdx.models import GBTClassifier, TreeClassifier
from kdx.models.soft_targets import blended_targets, weighted_rows


def _data(n=300, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4)).astype(np.float32)
    y = ((X[:, 0] + 0.5 * X[:, 1] + rng.normal(0, 0.5, n)) > 0).astype(np.int64)
    return X, y, rng.normal(size=(n, 2)) * 2


def test_weighted_rows_are_exactly_the_soft_cross_entropy():
    rng = np.random.default_rng(1)
    q = softmax(rng.normal(size=(50, 3)), axis=1)
    p = softmax(rng.normal(size=(50, 3)), axis=1)
    X = np.arange(50)[:, None].astype(float)
    Xw, yw, w = weighted_rows(X, q)
    weighted = np.sum(w * -np.log(p[Xw[:, 0].astype(int), yw]))
    assert weighted == pytest.approx(np.sum(q * -np.log(p)))


def test_blend_follows_alpha_and_tau():
    y = np.array([0, 1])
    z = np.array([[2.0, 0.0], [0.0, 2.0]])
    q = blended_targets(y, z, 2, tau=2.0, alpha=0.25)
    assert q == pytest.approx(0.25 * np.eye(2) + 0.75 * softmax(z / 2.0, axis=1))
    assert np.array_equal(blended_targets(y, z, 2, 3.0, 1.0), np.eye(2))


@pytest.mark.parametrize("make", [lambda: TreeClassifier(max_depth=3),
                                  lambda: GBTClassifier(n_estimators=5, max_depth=2)])
def test_alpha_one_reproduces_the_hard_label_model(make):
    X, y, z = _data()
    hard = make().fit(X, y, X, y, 2)
    signals = TeacherSignals({"teacher_logits": z})
    kd_one = make().fit(X, y, X, y, 2, objective=Hinton(3.0, 1.0), signals=signals)
    assert np.array_equal(hard.logits(X), kd_one.logits(X))
    kd = make().fit(X, y, X, y, 2, objective=Hinton(3.0, 0.2), signals=signals)
    assert not np.array_equal(hard.logits(X), kd.logits(X))


def test_tree_can_reach_the_teachers_soft_labels_exactly():
    points = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], dtype=np.float32)
    X = np.repeat(points, 25, axis=0)
    teacher = np.repeat(np.array([[2.0, -1.0, 0.0], [0.0, 0.5, 0.2], [-1.0, 1.0, 3.0], [0.3, 0.3, 0.3]]), 25, axis=0)
    y = teacher.argmax(1)
    tree = TreeClassifier(max_depth=None, min_samples_leaf=1).fit(X, y, X, y, 3, objective=Hinton(2.0, 0.0),
                                                                  signals=TeacherSignals({"teacher_logits": teacher}))
    np.testing.assert_allclose(tree._full_proba(points), softmax(teacher[::25] / 2.0, axis=1), atol=1e-12)


def test_tree_shap_is_exact_and_additive():
    X, y, _ = _data()
    tree = TreeClassifier(max_depth=4).fit(X, y, X, y, 2)
    background = X[:25]
    A, per_class = output_matrix(2, "margin")
    rows = X[100:108]
    e = explain(tree, rows, background, A, per_class, np.zeros(len(rows), int))
    margin = lambda Z: (lambda z: z[:, 1] - z[:, 0])(tree.logits(Z))  # noqa: E731
    exact = np.array([exact_interventional_shapley(margin, x, background) for x in rows])
    np.testing.assert_allclose(e.columns, exact, atol=1e-8)
    assert e.additivity_error < 1e-6 and "TreeExplainer" in e.explainer


@pytest.mark.parametrize("kwargs,match", [({"max_depth": 0}, "max_depth"), ({"max_depth": 2.5}, "max_depth"),
                                          ({"max_leaf_nodes": 1}, "max_leaf_nodes"), ({"min_samples_leaf": -1}, "min")])
def test_bad_tree_settings_are_named(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        TreeClassifier(**kwargs)


def test_tree_student_takes_part_in_every_measurement(tmp_path, compose_cfg):
    from kdx.analysis.report import write_report
    from kdx.run.protocol import run

    cfg = compose_cfg("dataset=adult", "teacher=dnn", "student=tree", "+smoke=on", "limits.rows=600")
    result = run(cfg, tmp_path)
    m = result.metrics.set_index("model")
    for col in ("accuracy", "ece", "params", "latency_ms", "size_bytes", "cosine", "stability", "teacher_agreement"):
        assert m.loc[["student_nokd", "student_kd"], col].notna().all(), col
    assert (m.additivity_error < 1e-4).all()
    rules = (tmp_path / "checkpoints" / "seed_0" / "student_kd_rules.txt").read_text()
    assert "if " in rules and "predict" in rules and ("<=50K" in rules or ">50K" in rules)
    # thresholds in raw units: e.g. age in years, not standardized values
    text = write_report(tmp_path, figures=False)[0].read_text()
    assert "the distilled tree" in text and "Agreement with the teacher" in text


def test_small_gbt_student_distills(tmp_path, compose_cfg):
    from kdx.run.protocol import run

    cfg = compose_cfg("experiment=breast_cancer", "student=small_gbt", "+smoke=on")
    m = run(cfg, tmp_path).metrics
    assert (m[m.model == "student_kd"].accuracy > 0.8).all()
