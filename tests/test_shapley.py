"""Model-agnostic exact and permutation Shapley values (kdx.measure.shapley) against independent references."""

import warnings

import numpy as np
import pytest
from test_explain import _data, _margin, exact_interventional_shapley

from kdx.errors import ConfigError
from kdx.measure.alignment import cosine
from kdx.measure.explain import explain, output_matrix
from kdx.measure.shapley import antithetic_permutations, evaluations_per_row, exact_shapley, permutation_shapley
from kdx.models import MLPClassifier


@pytest.fixture(scope="module")
def three_class():
    X, y = _data(n=300, d=5, classes=3)
    mlp = MLPClassifier(hidden=(12, 6), epochs=25, seed=0).fit(X, y, X[:60], y[:60], 3)
    A, _ = output_matrix(3, "centred")
    rows, background = X[100:108], X[:25]
    weights = A[:, mlp.predict(rows)].T
    return mlp, rows, background, weights


def _explained(mlp, weights):
    return lambda i: (lambda Z: mlp.logits(Z.astype(np.float32)).astype(np.float64) @ weights[i])


def test_exact_equals_brute_force_enumeration_and_shaps_exact_explainer(three_class):
    import shap

    mlp, rows, background, weights = three_class
    ours = exact_shapley(mlp.logits, rows, background, weights)
    brute = np.array([exact_interventional_shapley(_explained(mlp, weights)(i), x, background)
                      for i, x in enumerate(rows)])
    np.testing.assert_allclose(ours, brute, atol=1e-5)
    # shap's own exact explainer on the same game, one logit at a time, combined with the same weights.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        masker = shap.maskers.Independent(background.astype(np.float64), max_samples=len(background))
        f = lambda Z: mlp.logits(np.asarray(Z, dtype=np.float32)).astype(np.float64)  # noqa: E731
        per_logit = shap.ExactExplainer(f, masker)(rows.astype(np.float64)).values  # (rows, d, classes)
    np.testing.assert_allclose(ours, np.einsum("rdc,rc->rd", per_logit, weights), atol=1e-5)


def test_product_game_splits_the_interaction_equally():
    f = lambda Z: np.stack([np.zeros(len(Z)), Z[:, 0] * Z[:, 1]], axis=1)  # noqa: E731
    x, background, w = np.array([[2.0, 3.0]]), np.zeros((1, 2)), np.array([[0.0, 1.0]])
    np.testing.assert_allclose(exact_shapley(f, x, background, w), [[3.0, 3.0]])
    np.testing.assert_allclose(permutation_shapley(f, x, background, w, pairs=1), [[3.0, 3.0]])


def test_permutation_is_additive_deterministic_and_converges(three_class):
    mlp, rows, background, weights = three_class
    exact = exact_shapley(mlp.logits, rows, background, weights)
    few = permutation_shapley(mlp.logits, rows, background, weights, pairs=2, seed=0)
    # Each walk through an order telescopes to v(all) − v(∅): additivity holds for any number of orders.
    np.testing.assert_allclose(few.sum(1), exact.sum(1), atol=1e-6)
    np.testing.assert_array_equal(few, permutation_shapley(mlp.logits, rows, background, weights, pairs=2, seed=0))
    assert not np.array_equal(few, permutation_shapley(mlp.logits, rows, background, weights, pairs=2, seed=1))
    many = permutation_shapley(mlp.logits, rows, background, weights, pairs=150, seed=0)
    assert cosine(exact, many)[0] > 0.999
    assert np.abs(many - exact).max() < np.abs(few - exact).max()


@pytest.mark.parametrize("method", ["exact", "permutation"])
def test_documented_cost_is_the_number_of_model_evaluations(three_class, method):
    mlp, rows, background, weights = three_class
    seen = []
    counting = lambda Z: (seen.append(len(Z)), mlp.logits(Z))[1]  # noqa: E731
    estimator = exact_shapley if method == "exact" else lambda *a: permutation_shapley(*a, pairs=3)
    estimator(counting, rows, background, weights)
    assert sum(seen) == len(rows) * evaluations_per_row(method, rows.shape[1], len(background), pairs=3)


def test_orders_are_antithetic_pairs():
    orders = antithetic_permutations(6, 3, seed=0)
    assert orders.shape == (6, 6)
    for forward, backward in zip(orders[::2], orders[1::2], strict=True):
        assert sorted(forward) == list(range(6)) and list(backward) == list(forward[::-1])


def test_linear_model_is_exact_for_any_sample_of_orders():
    X, y = _data()
    linear = MLPClassifier(hidden=(), epochs=10, seed=0).fit(X, y, X[:80], y[:80], 2)
    A, per_class = output_matrix(2, "margin")
    closed = explain(linear, X[:20], X[50:90], A, per_class, np.zeros(20, int)).columns  # DeepLIFT: exact here
    got = explain(linear, X[:20], X[50:90], A, per_class, np.zeros(20, int), method="permutation",
                  permutations=1)
    np.testing.assert_allclose(got.columns, closed, atol=1e-5)
    assert got.explainer.startswith("permutation sampling")


def test_method_exact_equals_the_enumerated_game_on_a_relu_net():
    X, y = _data()
    mlp = MLPClassifier(hidden=(16, 8), epochs=30, seed=0).fit(X, y, X[:80], y[:80], 2)
    A, per_class = output_matrix(2, "margin")
    rows, background, cls = X[100:110], X[:30], np.zeros(10, int)
    exact = explain(mlp, rows, background, A, per_class, cls, method="exact")
    reference = np.array([exact_interventional_shapley(_margin(mlp), x, background) for x in rows])
    np.testing.assert_allclose(exact.columns, reference, atol=1e-5)
    assert exact.additivity_error < 1e-5 and exact.explainer.startswith("exact Shapley")


def test_exact_refuses_too_many_columns(tmp_path, compose_cfg):
    from kdx.run.protocol import run

    X = np.zeros((2, 17), dtype=np.float32)
    with pytest.raises(ConfigError, match="limited to 16 players: use explain.method=permutation"):
        exact_shapley(lambda Z: np.zeros((len(Z), 2)), X, X, np.ones((2, 2)))
    # Refused before any training: Adult's 14 features become ~80 one-hot columns.
    with pytest.raises(ConfigError, match=r"adult has \d+: use explain.method=permutation"):
        run(compose_cfg("experiment=adult", "+smoke=on", "explain.method=exact"), tmp_path)
    assert not list((tmp_path / "checkpoints").glob("seed_*/teacher*")) and not (tmp_path / "metrics.csv").exists()


def test_run_with_permutation_method(tmp_path, compose_cfg):
    from kdx.run.protocol import run

    cfg = compose_cfg("experiment=wine_quality", "+smoke=on", "seeds=[0]", "profile.enabled=false",
                      "explain.method=permutation", "explain.permutations=2", "explain.rows=40",
                      "explain.stability_rows=10")
    m = run(cfg, tmp_path).metrics.set_index("model")
    assert m.explainer.str.startswith("permutation sampling (2 antithetic pairs").all()
    assert (m.additivity_error < 1e-4).all() and m.loc["student_kd", ["cosine", "stability"]].notna().all()
