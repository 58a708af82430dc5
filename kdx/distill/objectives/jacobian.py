"""Jacobian matching (Srinivas & Fleuret 2018): Hinton KD plus matching the direction of the input
gradients of the explained output."""

from __future__ import annotations

import torch

from kdx.distill.objectives.base import TeacherSignals
from kdx.distill.objectives.gradients import GradientMatching, normalized


def jacobian_term(student_grad: torch.Tensor, teacher_grad: torch.Tensor) -> torch.Tensor:
    """mean over rows of ‖ĝ_T − ĝ_S‖² with ĝ = g/‖g‖₂ (0 for identical gradient directions). Inputs are
    (rows, columns); a student's may carry a leading stack dimension (kdx.distill.stacked): one mean each."""
    return ((normalized(teacher_grad) - normalized(student_grad)) ** 2).sum(-1).mean(-1)


class Jacobian(GradientMatching):
    """`kd_loss(z_S, z_T, y, τ, α) + λ·mean ‖ĝ_T − ĝ_S‖²`, ĝ the L2-normalised gradient of the explained output
    (margin / centred logit of the teacher's class, the SHAP game's scalar) w.r.t. the encoded inputs.
    Teacher gradients on the training rows are computed once per seed."""

    name = "jacobian"

    def signals(self, teacher, X, y, n_classes, column_feature, output) -> TeacherSignals:
        logits, W, grad = self.teacher_pass(teacher, X, output)
        return TeacherSignals({"teacher_logits": logits, "weights": W, "teacher_grad": grad})

    @staticmethod
    def term(settings, step):
        return settings["lam"] * jacobian_term(step.gradients(step.rows["weights"]), step.rows["teacher_grad"])
