import numpy as np
import pytest
from scipy.special import softmax
from sklearn.metrics import accuracy_score, f1_score, log_loss

from kdx.measure.metrics import expected_calibration_error, fidelity


def test_ece_hand_computed():
    # Two bins used out of 15: conf 0.9 (bin 14) for 2 rows, one right; conf 0.6 (bin 9) for 2 rows, both right.
    proba = np.array([[0.9, 0.1], [0.1, 0.9], [0.6, 0.4], [0.4, 0.6]])
    y = np.array([0, 0, 0, 1])
    expected = 0.5 * abs(0.5 - 0.9) + 0.5 * abs(1.0 - 0.6)
    assert expected_calibration_error(proba, y, 15) == pytest.approx(expected)


def test_perfectly_calibrated_is_zero():
    proba = np.tile([[0.75, 0.25]], (4, 1))
    y = np.array([0, 0, 0, 1])
    assert expected_calibration_error(proba, y) == pytest.approx(0.0)


def test_fidelity_matches_sklearn():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(200, 4)) * 2
    y = rng.integers(0, 4, 200)
    got = fidelity(logits, y)
    proba = softmax(logits, axis=1)
    assert got["accuracy"] == pytest.approx(accuracy_score(y, proba.argmax(1)))
    assert got["nll"] == pytest.approx(log_loss(y, proba, labels=range(4)))
    assert got["macro_f1"] == pytest.approx(f1_score(y, proba.argmax(1), average="macro"))


def test_nll_stays_finite_for_confident_mistakes():
    logits = np.array([[1000.0, -1000.0]])
    assert np.isfinite(fidelity(logits, np.array([1]))["nll"])
