"""Predictive-fidelity metrics computed from class probabilities."""

from __future__ import annotations

import numpy as np
from scipy.special import log_softmax, softmax
from sklearn.metrics import f1_score

FIDELITY_METRICS = ("accuracy", "ece", "nll", "macro_f1")


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


def fidelity(logits: np.ndarray, y: np.ndarray, n_bins: int = 15) -> dict[str, float]:
    """Accuracy, ECE, NLL and macro-F1 of a model's logits against integer labels."""
    proba = softmax(logits.astype(np.float64), axis=1)
    pred = proba.argmax(axis=1)
    return {
        "accuracy": float((pred == y).mean()),
        "ece": expected_calibration_error(proba, y, n_bins),
        "nll": negative_log_likelihood(logits, y),
        "macro_f1": float(f1_score(y, pred, average="macro", labels=np.arange(proba.shape[1]), zero_division=0)),
    }
