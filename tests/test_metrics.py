import numpy as np
import pytest
from scipy.special import softmax
from sklearn.metrics import accuracy_score, brier_score_loss, f1_score, log_loss, roc_auc_score

from kdx.measure.metrics import expected_calibration_error, fidelity, teacher_kl


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


@pytest.mark.parametrize("classes", [2, 4])
def test_auc_and_brier_match_sklearn(classes):
    rng = np.random.default_rng(classes)
    logits = rng.normal(size=(300, classes)) * 2
    y = (logits + rng.normal(size=logits.shape) * 2).argmax(1)  # informative, not perfect
    got = fidelity(logits, y)
    proba = softmax(logits, axis=1)
    auc = roc_auc_score(y, proba[:, 1]) if classes == 2 else roc_auc_score(y, proba, multi_class="ovr",
                                                                            average="macro")
    assert got["roc_auc"] == pytest.approx(auc, abs=1e-12)
    assert 0.5 < got["roc_auc"] < 1
    assert got["brier"] == pytest.approx(brier_score_loss(y, proba, labels=range(classes)), abs=1e-12)


def test_auc_leaves_out_a_class_absent_from_the_rows():
    # Class 2 never occurs: its one-vs-rest AUC does not exist; the macro mean is over classes 0 and 1.
    proba = np.array([[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.5, 0.3, 0.2], [0.3, 0.3, 0.4]])
    y = np.array([0, 1, 0, 1])
    expected = np.mean([roc_auc_score(y == 0, proba[:, 0]), roc_auc_score(y == 1, proba[:, 1])])
    assert fidelity(np.log(proba), y)["roc_auc"] == pytest.approx(expected)
    assert np.isnan(fidelity(np.log(proba[:, :2]), np.zeros(4, dtype=int))["roc_auc"])  # one class only


def test_teacher_kl_against_a_direct_sum():
    rng = np.random.default_rng(3)
    t, s = rng.normal(size=(50, 3)), rng.normal(size=(50, 3))
    p, q = softmax(t, axis=1), softmax(s, axis=1)
    assert teacher_kl(t, s) == pytest.approx(float((p * np.log(p / q)).sum(1).mean()))
    assert teacher_kl(t, t) == pytest.approx(0.0, abs=1e-12)
    assert np.isfinite(teacher_kl(np.array([[800.0, -800.0]]), np.array([[-800.0, 800.0]])))
