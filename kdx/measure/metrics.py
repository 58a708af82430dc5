"""Predictive-fidelity metrics: from class probabilities (classification) or predicted values (regression)."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.special import log_softmax, softmax
from scipy.stats import binomtest
from sklearn.metrics import f1_score, roc_auc_score

FIDELITY_METRICS = ("accuracy", "ece", "nll", "macro_f1", "roc_auc", "brier")
REGRESSION_METRICS = ("r2", "rmse", "mae")  # on the target's own scale


def headline(columns) -> str:
    """The metric a run is judged by (P of J, the seed lines, the claims): R² where it predicted numbers (its
    metrics have `r2` and no `accuracy`), else accuracy."""
    return "r2" if "r2" in columns and "accuracy" not in columns else "accuracy"


def headline_name(metric: str) -> str:
    """How messages and tables name the headline metric: R², or accuracy."""
    return "R²" if metric == "r2" else metric


def predictive_metrics(regression: bool) -> tuple[str, ...]:
    """The columns `scores` gives for a task."""
    return REGRESSION_METRICS if regression else FIDELITY_METRICS


def r2(y: np.ndarray, pred: np.ndarray) -> float:
    """Coefficient of determination 1 − Σ(y − ŷ)² / Σ(y − ȳ)² (scikit-learn's `r2_score`); NaN for a constant y."""
    y, pred = np.asarray(y, np.float64), np.asarray(pred, np.float64)
    total = float(((y - y.mean()) ** 2).sum())
    return 1.0 - float(((y - pred) ** 2).sum()) / total if total > 0 else float("nan")


def regression_fidelity(pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """R², RMSE and MAE of predicted values against the target, both in the target's units."""
    err = np.asarray(pred, np.float64) - np.asarray(y, np.float64)
    return {"r2": r2(y, pred), "rmse": float(np.sqrt(np.mean(err**2))), "mae": float(np.mean(np.abs(err)))}


def teacher_fit(teacher_pred: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """A regression student's fidelity to its teacher: the RMSE between their predictions (`teacher_rmse`, the
    target's units) and the R² of the student's predictions against the teacher's (`teacher_r2`)."""
    fit = regression_fidelity(pred, teacher_pred)
    return {"teacher_rmse": fit["rmse"], "teacher_r2": fit["r2"]}


def to_teacher(logits: np.ndarray, teacher_logits: np.ndarray, preprocessor=None, itself: bool = False) -> dict:
    """How closely a model follows the teacher on some rows: agreement and KL from it (classification), RMSE to it
    and R² against it (`teacher_fit`, a regression: `preprocessor` standardized its target). The teacher's
    distance to itself (`itself`) is no measurement (and would put trivial tests in Holm's family): NaN, but for
    its agreement (1, as always recorded)."""
    if preprocessor is not None and preprocessor.regression:
        if itself:
            return {"teacher_rmse": float("nan"), "teacher_r2": float("nan")}
        return teacher_fit(preprocessor.unscale_target(teacher_logits), preprocessor.unscale_target(logits))
    return {"teacher_agreement": float((logits.argmax(1) == teacher_logits.argmax(1)).mean()),
            "teacher_kl": float("nan") if itself else teacher_kl(teacher_logits, logits)}


def scores(outputs: np.ndarray, y: np.ndarray, n_bins: int = 15, preprocessor=None) -> dict[str, float]:
    """A model's predictive metrics on some rows: `fidelity` of its logits against the class labels, or — when
    `preprocessor` standardized a regression target — `regression_fidelity` of its outputs mapped back to the
    target's units against `y` in those units."""
    if preprocessor is not None and preprocessor.regression:
        return regression_fidelity(preprocessor.unscale_target(outputs), y)
    return fidelity(outputs, y, n_bins)


def expected_calibration_error(proba: np.ndarray, y: np.ndarray, n_bins: int = 15) -> float:
    """ECE over `n_bins` equal-width bins of top-class confidence: Σ_b (|b|/n)·|acc(b) − conf(b)|.

    Bins are (lo, hi], the first one [0, hi], as in Guo et al. (2017).
    """
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y
    bins = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        members = bins == b
        if members.any():
            ece += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(ece)


def negative_log_likelihood(logits: np.ndarray, y: np.ndarray) -> float:
    """Mean −log p(y|x), from logits so that confident mistakes stay finite."""
    return float(-np.mean(log_softmax(logits.astype(np.float64), axis=1)[np.arange(len(y)), y]))


def roc_auc(proba: np.ndarray, y: np.ndarray) -> float:
    """ROC-AUC: of the positive class's probability (binary); else the macro mean of the one-vs-rest AUCs of
    the classes that have both members and non-members among the rows (scikit-learn's `multi_class="ovr"`,
    `average="macro"` when every class is present; a class absent from the rows has no AUC and is left out
    rather than failing the run). NaN when no class has both."""
    y = np.asarray(y)
    if proba.shape[1] == 2:
        return float(roc_auc_score(y, proba[:, 1])) if len(np.unique(y)) == 2 else float("nan")
    scores = [roc_auc_score(y == k, proba[:, k]) for k in range(proba.shape[1]) if 0 < (y == k).sum() < len(y)]
    return float(np.mean(scores)) if scores else float("nan")


def brier_score(proba: np.ndarray, y: np.ndarray) -> float:
    """Brier score as scikit-learn's `brier_score_loss` defines it: mean over rows of Σ_k (p_k − [y = k])²,
    halved for a binary task (= mean (p₁ − y)², the classic binary form)."""
    onehot = np.eye(proba.shape[1])[np.asarray(y)]
    total = float(((proba - onehot) ** 2).sum(1).mean())
    return total / 2 if proba.shape[1] == 2 else total


def teacher_kl(teacher_logits: np.ndarray, student_logits: np.ndarray) -> float:
    """Mean over rows of KL(p_T ‖ p_S) in nats, from logits (log-softmax, so confident mismatches stay finite):
    how much of the teacher's distribution the student fails to reproduce (0 = the same probabilities)."""
    log_t = log_softmax(np.asarray(teacher_logits, np.float64), axis=1)
    log_s = log_softmax(np.asarray(student_logits, np.float64), axis=1)
    return float((np.exp(log_t) * (log_t - log_s)).sum(1).mean())


def fidelity(logits: np.ndarray, y: np.ndarray, n_bins: int = 15) -> dict[str, float]:
    """Accuracy, ECE, NLL, macro-F1, ROC-AUC and Brier score of a model's logits against integer labels."""
    proba = softmax(logits.astype(np.float64), axis=1)
    pred = proba.argmax(axis=1)
    return {
        "accuracy": float((pred == y).mean()),
        "ece": expected_calibration_error(proba, y, n_bins),
        "nll": negative_log_likelihood(logits, y),
        "macro_f1": float(f1_score(y, pred, average="macro", labels=np.arange(proba.shape[1]), zero_division=0)),
        "roc_auc": roc_auc(proba, y),
        "brier": brier_score(proba, y),
    }


SANITY_P = 0.01  # a teacher is stopped only when the evidence against it is this strong (one-sided sign test)


def _sign_test(better: np.ndarray, worse: np.ndarray) -> float:
    """One-sided exact sign test over the rows where exactly one of two predictors is right: p-value of 'the
    first is right more often than the second' under equal chances."""
    wins, losses = int((better & ~worse).sum()), int((worse & ~better).sum())
    return 1.0 if wins + losses == 0 else float(binomtest(wins, wins + losses, 0.5, alternative="greater").pvalue)


def label_sanity(pred: np.ndarray, y: np.ndarray, majority: int, n_classes: int) -> dict:
    """How a predictor's labels compare with always predicting the `majority` class, and with its own outputs
    relabelled by the permutation of classes that scores best on these rows (the assignment maximizing the
    diagonal of the confusion matrix). `mapping[i]`: the class that prediction i becomes under it.
    `p_below_majority` / `p_permuted`: one-sided sign tests that the majority rule / the permuted outputs are
    right more often than the predictor as it is."""
    pred, y = np.asarray(pred), np.asarray(y)
    confusion = np.zeros((n_classes, n_classes))
    np.add.at(confusion, (pred, y), 1)
    rows, cols = linear_sum_assignment(-confusion)
    mapping = np.empty(n_classes, dtype=int)
    mapping[rows] = cols
    correct, by_majority, permuted = pred == y, y == majority, mapping[pred] == y
    return {
        "accuracy": float(correct.mean()), "majority_accuracy": float(by_majority.mean()),
        "permuted_accuracy": float(permuted.mean()), "mapping": mapping,
        "p_below_majority": _sign_test(by_majority, correct), "p_permuted": _sign_test(permuted, correct),
    }


def regression_sanity(pred: np.ndarray, y: np.ndarray, mean: float = 0.0) -> dict:
    """How a regressor's predictions compare with always predicting `mean` (the training target's mean; 0 in
    standardized units): R², the rows where the mean is nearer, and the one-sided sign test that it is nearer
    more often than the predictions (`p_below_mean`)."""
    pred, y = np.asarray(pred, np.float64), np.asarray(y, np.float64)
    model_error, mean_error = np.abs(pred - y), np.abs(mean - y)
    nearer = mean_error < model_error
    return {"r2": r2(y, pred), "mean_nearer": int(nearer.sum()),
            "p_below_mean": _sign_test(nearer, model_error < mean_error)}
