"""Measures a careful reader needs: scale-free MAD, global cosine, categorical perturbations for stability,
computed costs, repeated cross-validation splits, and selections that neither noise nor repeats decide."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kdx.analysis.tables import pareto_and_best
from kdx.data.split import cv_split, make_split
from kdx.measure.alignment import cosine, cosine_global, mad, mad_total, stability
from kdx.measure.explain import ExplainContext, ExplainSettings
from kdx.models import GBTClassifier, MLPClassifier, TreeClassifier


def test_mad_total_is_scale_free_and_bounded():
    rng = np.random.default_rng(0)
    for d in (3, 14, 30):
        t, s = rng.normal(size=(50, d)), rng.normal(size=(50, d))
        assert mad_total(t, s) == pytest.approx(d / 2 * mad(t, s))
        assert 0 <= mad_total(t, s) <= 1
        assert mad(t, s) <= 2 / d + 1e-12  # why kdx 0.1's MAD cannot be compared across d
    # Disjoint supports: total disagreement 1; equal up to scale: 0.
    assert mad_total(np.array([[1.0, 0.0]]), np.array([[0.0, 3.0]])) == pytest.approx(1.0)
    assert mad_total(np.array([[1.0, -2.0]]), np.array([[3.0, -6.0]])) == pytest.approx(0.0)


def test_global_cosine_differs_from_per_row_cosine():
    # Two rows whose attributions disagree in sign per row but agree in global importance.
    t = np.array([[1.0, 0.0], [0.0, 1.0]])
    s = np.array([[-1.0, 0.0], [0.0, -1.0]])
    assert cosine(t, s)[0] == pytest.approx(-1.0)
    assert cosine_global(t, s) == pytest.approx(1.0)
    a, b = np.array([[1.0, 2.0], [3.0, 1.0]]), np.array([[2.0, 1.0], [1.0, 1.0]])
    ga, gb = np.abs(a).mean(0), np.abs(b).mean(0)
    assert cosine_global(a, b) == pytest.approx(ga @ gb / np.linalg.norm(ga) / np.linalg.norm(gb))


class _Fixed:
    """A stand-in teacher: logits from a fixed linear map."""

    def __init__(self, w):
        self.w = w

    def logits(self, X):
        return X @ self.w


def test_categorical_resampling_keeps_one_hot_rows_valid_and_follows_the_marginal():
    rng = np.random.default_rng(0)
    n = 4000
    num = rng.normal(size=(n, 2)).astype(np.float32)
    level = rng.choice(3, size=n, p=[0.6, 0.3, 0.1])
    X = np.hstack([num, np.eye(3, dtype=np.float32)[level]])
    column_feature = np.array([0, 1, 2, 2, 2])
    settings = ExplainSettings(rows=400, background=20, stability_rows=400, stability_draws=5,
                               categorical_resample=0.5)
    ctx = ExplainContext.build(_Fixed(rng.normal(size=(5, 2))), 2, X, X[:400], settings, 0,
                               column_feature=column_feature)
    noisy = ctx.X_noisy.reshape(400, 5, 5)
    block = noisy[..., 2:]
    assert np.all(block.sum(-1) == 1) and set(np.unique(block)) == {0.0, 1.0}  # valid one-hot rows
    changed = (block != X[:400, None, 2:]).any(-1).mean()
    # Resampled with p = 0.5 from the marginal (0.6, 0.3, 0.1): P(change) = 0.5·(1 − Σ p_k·p(row's level)).
    expected = 0.5 * (1 - np.mean([[0.6, 0.3, 0.1][k] for k in level[:400]]))
    assert changed == pytest.approx(expected, abs=0.03)
    assert ctx.perturbed.shape == (400, 5, 3) and ctx.perturbed[..., :2].all()
    assert np.array_equal(ctx.perturbed[..., 2], (block != X[:400, None, 2:]).any(-1))  # only real changes count
    off = ExplainContext.build(_Fixed(rng.normal(size=(5, 2))), 2, X, X[:400],
                               ExplainSettings(rows=400, categorical_resample=0.0), 0, column_feature=column_feature)
    assert off.perturbed[..., :2].all() and not off.perturbed[..., 2].any()
    assert np.array_equal(off.X_noisy.reshape(100, 10, 5)[..., 2:], np.repeat(X[:100, None, 2:], 10, axis=1))


def test_stability_reports_the_perturbed_share_of_attribution_mass():
    phi = np.array([[3.0, 1.0], [1.0, 1.0]])
    noisy = np.repeat(phi[:, None, :], 2, axis=1)
    out = stability(phi, noisy, np.array([True, False]))
    # per row and draw: 3/4 of row 1's mass and 1/2 of row 2's sit on the perturbed feature
    assert out["stability"] == 1.0 and out["stability_perturbed_share"] == pytest.approx((3 / 4 + 1 / 2) / 2)
    # The index is unbounded below: a perturbation that flips the attribution gives 1 − 2 = −1.
    assert stability(phi, -noisy)["stability"] == pytest.approx(-1.0)


def _fit(model, X, y):
    return model.fit(X[:300], y[:300], X[300:], y[300:], 2)


def test_flops_are_computed_not_timed():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 6)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    mlp = _fit(MLPClassifier(hidden=(8, 4), epochs=2), X, y)
    assert mlp.flops() == 2 * (6 * 8 + 8 * 4 + 4 * 2) + 8 + 4
    assert _fit(MLPClassifier(hidden=(), epochs=2), X, y).flops() == 2 * 6 * 2  # logistic regression
    tree = _fit(TreeClassifier(max_depth=3), X, y)
    path = tree.model_.decision_path(X[:300]).sum(1).A1 - 1  # comparisons per training row
    assert tree.flops() == pytest.approx(path.mean())
    gbt = _fit(GBTClassifier(n_estimators=5, max_leaf_nodes=4), X, y)
    assert 5 < gbt.flops() <= 5 * (3 + 1) and gbt.flops() == gbt.flops()


def test_repeated_cv_folds_partition_the_rows_and_carve_validation_from_training():
    y = np.array([0] * 60 + [1] * 30 + [2] * 7)
    seen = []
    for fold in range(5):
        s = cv_split(y, repeat=1, fold=fold, folds=5, val_share=0.15 / 0.85)
        parts = np.concatenate([s.train, s.val, s.test])
        assert sorted(parts) == list(range(len(y)))  # a partition of all rows
        assert all(set(y[p]) == {0, 1, 2} for p in (s.train, s.val, s.test))
        seen.append(s.test)
        assert make_split(y, 1 * 5 + fold, "repeated_cv", folds=5).test.tolist() == s.test.tolist()
    tests = np.concatenate(seen)
    assert sorted(tests) == list(range(len(y)))  # every row is tested exactly once per repeat
    other = cv_split(y, repeat=2, fold=0, folds=5, val_share=0.2)
    assert set(other.test) != set(seen[0])
    with pytest.raises(Exception, match="repeated_cv"):
        cv_split(np.array([0] * 20 + [1] * 3), 0, 0, 5, 0.2)


def _point(run, model, val_p, c, val_i, teacher="dnn", candidate=None, dataset="adult", tau=1.0):
    return {"run": run, "dataset": dataset, "teacher": teacher, "teacher_id": teacher, "pair": f"{teacher}→s",
            "candidate": candidate or f"{run}-{model}", "tau": tau, "alpha": 0.5, "model": model, "val_P": val_p,
            "C": c, "val_I": val_i, "accuracy": val_p, "I": val_i, "val_J_balanced": val_p - c + val_i,
            "J_balanced": val_p - c + val_i}


def test_pareto_and_best_exclude_the_teacher_dedupe_shared_models_and_group_per_teacher():
    points = pd.DataFrame([
        _point("0", "teacher", 0.90, 1.0, 1.0, candidate="T"),
        _point("1", "teacher", 0.90, 1.0, 1.0, candidate="T"),  # the same teacher, reused by job 1
        _point("0", "student_nokd", 0.85, 0.1, 0.90, candidate="N"),
        _point("1", "student_nokd", 0.85, 0.1, 0.90, candidate="N"),
        _point("0", "student_kd", 0.86, 0.1, 0.95, tau=1.0),
        _point("1", "student_kd", 0.84, 0.1, 0.95, tau=3.0),
        _point("2", "teacher", 0.80, 1.0, 1.0, teacher="gbt", candidate="G"),
        _point("2", "student_kd", 0.70, 0.2, 0.5, teacher="gbt"),
    ])
    marked, best = pareto_and_best(points, ["balanced"])
    assert len(marked) == 6  # the shared teacher and no-KD student count once
    assert not marked[marked.model == "teacher"].pareto.any()
    front = marked[marked.pareto]
    assert set(zip(front.teacher, front.tau, front.model)) == {("dnn", 1.0, "student_kd"), ("gbt", 1.0, "student_kd")}
    assert len(best) == 2 and set(best.model) == {"student_kd"}
    assert best.set_index("pair").loc["dnn→s", "τ"] == 1.0
    assert best.set_index("pair").loc["dnn→s", "teacher val J (reference)"] == pytest.approx(0.9)
