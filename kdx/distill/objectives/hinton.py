"""Hinton et al.'s temperature-scaled distillation, the study's loss (kdx.kd_loss)."""

from __future__ import annotations

from kdx.distill.objectives.base import Objective
from kdx.models.soft_targets import blended_targets, regression_targets


class Hinton(Objective):
    """`α·CE(y, z_S) + (1−α)·τ²·KL(softmax(z_T/τ) ‖ softmax(z_S/τ))`; tree students fit the blended
    target α·onehot(y) + (1−α)·softmax(z_T/τ). Both parts are the trainers' own (no term). For a regression:
    `α·MSE(y, f) + (1−α)·MSE(ŷ_T, f)` (kdx.models.losses.regression_kd_loss), tree students fit α·y + (1−α)·ŷ_T."""

    name = "hinton"
    soft_labels = True

    def soft_targets(self, y, signals, n_classes):
        return blended_targets(y, signals.rows["teacher_logits"], n_classes, self.tau, self.alpha)

    def regression_targets(self, y, signals):
        return regression_targets(y, signals.rows["teacher_logits"], self.alpha)
