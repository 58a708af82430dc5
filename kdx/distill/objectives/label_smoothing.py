"""The no-teacher control: the same student trained on smoothed labels (Yuan et al. 2020)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy.optimize import brentq
from scipy.special import softmax

from kdx.distill.objectives.base import Objective, TeacherSignals
from kdx.models.base import require_float


def smoothed_entropy(epsilon: float, n_classes: int) -> float:
    """Entropy (nats) of the target (1−ε)·onehot + ε/K."""
    top = 1 - epsilon + epsilon / n_classes
    rest = epsilon / n_classes
    return float(-top * np.log(top) - ((n_classes - 1) * rest * np.log(rest) if rest > 0 else 0.0))


def matching_epsilon(target_entropy: float, n_classes: int) -> float:
    """The ε whose smoothed one-hot target has `target_entropy` (clipped to [0, 1]; ε = 1 is the uniform)."""
    high = 1.0
    if target_entropy <= 0:
        return 0.0
    if target_entropy >= smoothed_entropy(high, n_classes):
        return high
    return float(brentq(lambda e: smoothed_entropy(e, n_classes) - target_entropy, 0.0, high))


class LabelSmoothing(Objective):
    """Cross-entropy with the targets (1−ε)·onehot(y) + ε/K: what KD would be if the teacher's soft targets
    carried no information beyond their entropy. `epsilon: null` picks ε so that the target entropy equals
    the mean entropy of the teacher's soft targets softmax(z_T/τ) on the training rows (the teacher is used
    for that number only); α is not used."""

    name = "label_smoothing"
    no_regression = "label smoothing softens one-hot class labels, and a regression has none"
    soft_labels = True
    kl = False  # the trainers' cross-entropy with label smoothing ε is the whole loss (α = 1)
    no_generated_rows = ("label smoothing learns from the true labels only (the teacher sets ε at most), so rows "
                         "without one would teach nothing; use kd=hinton with augmentation")

    def __init__(self, tau: float = 4.0, alpha: float = 0.5, epsilon: float | None = None):
        super().__init__(tau, alpha)
        self.epsilon = None if epsilon is None else require_float("kd.epsilon", epsilon, 0.0, 1.0)

    def settings(self) -> dict:
        return {**super().settings(), "epsilon": self.epsilon}

    def signals(self, teacher, X, y, n_classes, column_feature, output) -> TeacherSignals:
        epsilon = self.epsilon
        entropy = None
        if epsilon is None:
            p = softmax(teacher.logits(X).astype(np.float64) / self.tau, axis=1)
            entropy = float(-(p * np.log(np.clip(p, 1e-300, None))).sum(1).mean())
            epsilon = matching_epsilon(entropy, n_classes)
        return TeacherSignals({}, {"epsilon": np.asarray(epsilon, dtype=np.float32)},
                              resolved={"epsilon": epsilon, "teacher_entropy": entropy})

    def signals_key(self) -> tuple:
        return (*super().signals_key(), self.tau, self.epsilon)

    def student_loss(self, signals):
        loss = super().student_loss(signals)
        return replace(loss, alpha=1.0, tau=1.0)  # α is not used; τ only chose ε

    def smoothing(self, signals):
        return float(signals.constants["epsilon"])  # the float32 ε the signals carry (stacked and alone alike)

    def describe(self, signals):
        return f"label smoothing ε={self.smoothing(signals):.3g}"

    def soft_targets(self, y, signals, n_classes):
        eps = signals.resolved["epsilon"]
        return (1 - eps) * np.eye(n_classes)[y] + eps / n_classes
