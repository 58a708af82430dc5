import itertools
import math

import numpy as np
import pytest
from scipy.spatial.distance import cosine as scipy_cosine_distance
from scipy.stats import spearmanr

from kdx.measure.alignment import cosine, mad, spearman, stability, topk_agreement
from kdx.measure.explain import (
    ExplainSettings,
    align,
    attributions,
    explain,
    explained_output,
    logit_attributions,
    output_matrix,
)
from kdx.models import GBTClassifier, MLPClassifier


def _data(n=400, d=6, classes=2, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    score = X[:, 0] - 0.5 * X[:, 1] + 0.3 * X[:, 2] * X[:, 3]
    y = np.digitize(score, np.quantile(score, np.linspace(0, 1, classes + 1)[1:-1])).astype(np.int64)
    return X, y


@pytest.fixture(scope="module")
def binary():
    X, y = _data()
    mlp = MLPClassifier(hidden=(16, 8), epochs=30, seed=0).fit(X, y, X[:80], y[:80], 2)
    return X, y, mlp


def exact_interventional_shapley(f, x, background):
    """Shapley values of v(S) = mean_b f(x_S, b_rest) by enumerating all coalitions (d ≤ 8)."""
    d = len(x)
    values = {}
    for mask in itertools.product([0, 1], repeat=d):
        m = np.array(mask, bool)
        mixed = np.where(m, x, background)
        values[mask] = f(mixed).mean()
    phi = np.zeros(d)
    for j in range(d):
        for mask in values:
            if mask[j]:
                continue
            with_j = mask[:j] + (1,) + mask[j + 1:]
            s = sum(mask)
            weight = math.factorial(s) * math.factorial(d - s - 1) / math.factorial(d)
            phi[j] += weight * (values[with_j] - values[mask])
    return phi


def _margin(model):
    return lambda X: (lambda z: z[:, 1] - z[:, 0])(model.logits(X.astype(np.float32)).astype(np.float64))


def test_mlp_attributions_agree_with_exact_shapley(binary):
    X, _, mlp = binary
    background = X[:30]
    A, per_class = output_matrix(2, "auto")
    rows = X[100:110]
    ours = explain(mlp, rows, background, A, per_class, np.zeros(len(rows), int)).columns
    exact = np.array([exact_interventional_shapley(_margin(mlp), x, background) for x in rows])
    cos, _ = cosine(exact, ours)
    assert cos >= 0.98, cos


def test_linear_model_equals_closed_form(binary):
    X, y, _ = binary
    linear = MLPClassifier(hidden=(), epochs=20, seed=0).fit(X, y, X[:80], y[:80], 2)
    W = linear.net_[0].weight.detach().numpy().astype(np.float64)
    background = X[:50]
    A, per_class = output_matrix(2, "margin")
    got = explain(linear, X[200:240], background, A, per_class, np.zeros(40, int)).columns
    expected = (W[1] - W[0]) * (X[200:240] - background.mean(0))
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("classes", [2, 4])
def test_additivity_for_every_family(classes):
    X, y = _data(classes=classes)
    models = [MLPClassifier(hidden=(16,), epochs=10).fit(X, y, X[:80], y[:80], classes),
              GBTClassifier(n_estimators=15).fit(X, y, X, y, classes)]
    A, per_class = output_matrix(classes, "auto")
    for model in models:
        cls = model.predict(X[:60])
        e = explain(model, X[:60], X[100:140], A, per_class, cls)
        assert e.additivity_error < 1e-4, (type(model).__name__, e.additivity_error)


def test_tree_attributions_match_shaps_own_tree_explainer():
    import shap

    X, y = _data(classes=3)
    gbt = GBTClassifier(n_estimators=10).fit(X, y, X, y, 3)
    background = X[:40].astype(np.float64)
    ours = logit_attributions(gbt, X[:20], X[:40]).values
    ref = shap.TreeExplainer(gbt.model_, data=background, feature_perturbation="interventional",
                             model_output="raw").shap_values(X[:20].astype(np.float64), check_additivity=False)
    np.testing.assert_allclose(ours, np.asarray(ref), atol=1e-6)


@pytest.mark.parametrize("family", ["mlp", "gbt"])
def test_attributions_are_bit_identical_across_calls(binary, family):
    X, y, mlp = binary
    model = mlp if family == "mlp" else GBTClassifier(n_estimators=10).fit(X, y, X, y, 2)
    A, per_class = output_matrix(2, "auto")
    cls = np.zeros(50, int)
    a, _ = attributions(model, X[:50], X[100:150], A, per_class, cls)
    b, _ = attributions(model, X[:50], X[100:150], A, per_class, cls)
    assert np.array_equal(a, b)


@pytest.mark.parametrize("classes,output", [(2, "margin"), (3, "centred"), (3, "raw")])
def test_batched_deeplift_equals_shap_deep_explainer(classes, output):
    import shap
    import torch

    X, y = _data(classes=classes)
    mlp = MLPClassifier(hidden=(32, 16, 8), dropout=0.1, epochs=5).fit(X, y, X[:80], y[:80], classes)
    # ten explained rows are background rows: for those pairs Δz = 0 at every unit (the gradient rule)
    background, rows = X[:60], np.concatenate([X[100:150], X[:10]])
    A, per_class = output_matrix(classes, output)
    cls = mlp.predict(rows)
    ours, name = attributions(mlp, rows, background, A, per_class, cls)
    reference = shap.DeepExplainer(mlp.net_, torch.from_numpy(background)).shap_values(
        torch.from_numpy(rows), check_additivity=False)
    expected = explained_output(np.asarray(reference, dtype=np.float64).reshape(60, 6, classes), A, per_class, cls)
    assert "DeepLIFT" in name
    np.testing.assert_allclose(ours, expected, atol=1e-6)


def test_deeplift_chunks_do_not_change_attributions():
    # A row per chunk, a few rows per chunk (the last one shorter) and every row in one: the same attributions.
    from kdx.measure.deeplift import deeplift

    X, y = _data(classes=3)
    mlp = MLPClassifier(hidden=(32, 16), dropout=0.1, epochs=5).fit(X, y, X[:80], y[:80], 3)
    background, rows = X[:40], X[100:147]
    weights = np.random.default_rng(0).normal(size=(len(rows), 3))
    whole = deeplift(mlp.net_, rows, background, weights, chunk_bytes=2**30)
    for chunk_bytes in (1, 4 * 32 * 40 * 5):  # 1 row; 5 rows a chunk (47 = 9 x 5 + 2)
        np.testing.assert_allclose(deeplift(mlp.net_, rows, background, weights, chunk_bytes=chunk_bytes), whole,
                                   rtol=1e-5, atol=1e-7)


def test_centred_output_ignores_per_row_logit_shift():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(5, 3, 4))
    shifted = values + rng.normal(size=(5, 3, 1))
    A, per_class = output_matrix(4, "centred")
    cls = np.array([0, 1, 2, 3, 0])
    np.testing.assert_allclose(explained_output(values, A, per_class, cls),
                               explained_output(shifted, A, per_class, cls), atol=1e-12)
    A_raw, _ = output_matrix(4, "raw")
    assert not np.allclose(explained_output(values, A_raw, True, cls), explained_output(shifted, A_raw, True, cls))


def test_identical_models_align_perfectly(binary):
    X, _, mlp = binary
    settings = ExplainSettings(rows=60, background=30, stability_rows=10, stability_draws=3)
    result = align({"teacher": mlp, "student": mlp}, 6, lambda v: v, X[:200], X[200:], settings, seed=0)
    m = result["student"].metrics
    assert m["cosine"] == pytest.approx(1.0) and m["mad"] == pytest.approx(0.0, abs=1e-12)
    assert m["topk_agreement"] == 1.0 and m["spearman"] == pytest.approx(1.0)
    assert m["stability"] == result["teacher"].metrics["stability"]


def test_grouping_sums_one_hot_columns_back(binary):
    X, _, mlp = binary
    settings = ExplainSettings(rows=20, background=10, stability_rows=5, stability_draws=2)
    group = lambda v: np.stack([v[:, :2].sum(1), v[:, 2:].sum(1)], axis=1)  # noqa: E731
    result = align({"teacher": mlp, "student": mlp}, 6, group, X[:200], X[200:], settings, seed=0)
    np.testing.assert_allclose(result["teacher"].grouped, group(result["teacher"].columns), atol=1e-5)


def test_metric_formulas_against_scipy_and_hand_cases():
    rng = np.random.default_rng(3)
    t, s = rng.normal(size=(20, 7)), rng.normal(size=(20, 7))
    assert cosine(t, s)[0] == pytest.approx(np.mean([1 - scipy_cosine_distance(a, b) for a, b in zip(t, s)]))
    assert spearman(t, s)[0] == pytest.approx(np.mean([spearmanr(np.abs(a), np.abs(b))[0] for a, b in zip(t, s)]))
    # MAD, signs kept: [1, -1, 2]/4 vs [0, 2, -2]/4 -> mean |[.25, -.75, 1]| = 2/3
    assert mad(np.array([[1.0, -1, 2]]), np.array([[0.0, 2, -2]])) == pytest.approx(2 / 3)
    # top-2 of |t| = {2, 0}; of |s| = {0, 1}: one shared of two
    assert topk_agreement(np.array([[3.0, 1, -5]]), np.array([[4.0, 3, 1]]), 2) == 0.5
    zero_row = np.vstack([np.zeros(7), t[0]])
    assert cosine(zero_row, s[:2])[1] == 1


def test_stability_formula_and_exclusions():
    phi = np.array([[3.0, 4.0], [0.0, 0.0]])
    noisy = np.array([[[3.0, 4.0], [3.0, 9.0]], [[1.0, 1.0], [1.0, 1.0]]])  # deviations 0 and 5 from norm 5
    out = stability(phi, noisy)
    assert out["stability"] == pytest.approx(0.5) and out["stability_worst"] == pytest.approx(0.0)
    assert out["stability_excluded"] == 1


def test_run_writes_alignment_columns_and_attributions(tmp_path, compose_cfg):
    from kdx.run.protocol import run

    cfg = compose_cfg("experiment=wine_quality", "+smoke=on", "seeds=[0]", "profile.enabled=false")
    result = run(cfg, tmp_path)
    m = result.metrics.set_index("model")
    for col in ("cosine", "mad", "topk_agreement", "spearman"):
        assert m.loc[["student_nokd", "student_kd"], col].notna().all()
    assert m.stability.notna().all() and (m.additivity_error < 1e-3).all()
    z = np.load(tmp_path / "attributions" / "seed_0.npz")
    assert z["teacher"].shape == (cfg.explain.rows, 11) and len(z["feature_names"]) == 11
    assert z["student_kd_columns"].shape[0] == cfg.explain.rows


def test_stability_is_undefined_without_numeric_features(binary):
    X, _, mlp = binary
    settings = ExplainSettings(rows=20, background=10, stability_rows=5, stability_draws=2)
    result = align({"teacher": mlp, "student": mlp}, 0, lambda v: v, X[:200], X[200:], settings, seed=0)
    m = result["teacher"].metrics
    assert np.isnan(m["stability"]) and m["stability_excluded"] == 20
    assert result["student"].metrics["cosine"] == pytest.approx(1.0)
