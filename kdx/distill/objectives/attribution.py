"""Attribution matching: Hinton KD plus the cosine distance between teacher and student
gradient × (x − x̄) attributions per original feature, a cheap differentiable proxy of the interventional
SHAP game against the background mean."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from kdx.distill.objectives.base import TeacherSignals
from kdx.distill.objectives.gradients import GradientMatching, membership


def attribution_term(student_attr: torch.Tensor, teacher_attr: torch.Tensor) -> torch.Tensor:
    """mean over rows of 1 − cos(A_T, A_S) (0 for attributions pointing the same way). Inputs are (rows,
    features); a student's may carry a leading stack dimension (kdx.distill.stacked): one mean each."""
    return (1 - F.cosine_similarity(student_attr, teacher_attr, dim=-1, eps=1e-12)).mean(-1)


class Attribution(GradientMatching):
    """`kd_loss(z_S, z_T, y, τ, α) + λ·mean(1 − cos(A_T, A_S))` with A = (∂g/∂x ⊙ (x − x̄)) summed per original
    feature, g the explained output and x̄ the training rows' mean. Teacher attributions are computed once
    per seed."""

    name = "attribution"

    def signals(self, teacher, X, y, n_classes, column_feature, output) -> TeacherSignals:
        logits, W, grad = self.teacher_pass(teacher, X, output)
        # x̄: the training rows' mean (not that of rows the teacher labelled for augmentation, y = −1)
        labelled = np.asarray(y) >= 0
        mean = (X if labelled.all() else X[labelled]).mean(0, keepdims=True).astype(np.float32)
        M = membership(column_feature)
        attr = ((grad * (X - mean)) @ M).astype(np.float32)
        return TeacherSignals({"teacher_logits": logits, "weights": W, "teacher_attr": attr},
                              {"mean": mean, "membership": M})

    @staticmethod
    def term(settings, step):
        grad = step.gradients(step.rows["weights"])
        attr = (grad * (step.x - step.constants["mean"])) @ step.constants["membership"]
        return settings["lam"] * attribution_term(attr, step.rows["teacher_attr"])
