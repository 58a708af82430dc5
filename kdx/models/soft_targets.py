"""Distillation for learners that take class labels, not a loss: soft targets as weighted rows."""

from __future__ import annotations

import numpy as np
from scipy.special import softmax


def blended_targets(y: np.ndarray, teacher_logits: np.ndarray | None, n_classes: int, tau: float,
                    alpha: float) -> np.ndarray:
    """q = α·onehot(y) + (1−α)·softmax(z_T/τ), rows × classes (the KD loss's target, up to its τ² scale)."""
    onehot = np.eye(n_classes)[y]
    if teacher_logits is None or alpha == 1.0:
        return onehot
    return alpha * onehot + (1.0 - alpha) * softmax(np.asarray(teacher_logits, np.float64) / tau, axis=1)


def weighted_rows(X: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row repeated once per class k with label k and weight q_k; zero-weight copies dropped.

    For a learner minimizing weighted log-loss, Σ_i Σ_k q_ik·(−log p_k(x_i)) is exactly the cross-entropy
    with soft targets q; with one-hot q (α = 1) the rows, labels and weights are the hard-label data.
    """
    rows, classes = np.nonzero(q > 0)
    return X[rows], classes.astype(np.int64), q[rows, classes]
