"""Jacobian matching (Srinivas & Fleuret 2018): Hinton KD plus matching the direction of the input
gradients of the explained output."""

from __future__ import annotations

import numpy as np
import torch

from kdx.kd import kd_loss
from kdx.models.base import require_float
from kdx.objectives.base import Objective, TeacherSignals
from kdx.objectives.gradients import normalized, output_weights, teacher_gradients


def jacobian_term(student_grad: torch.Tensor, teacher_grad: torch.Tensor) -> torch.Tensor:
    """mean over rows of ‖ĝ_T − ĝ_S‖² with ĝ = g/‖g‖₂ (0 for identical gradient directions)."""
    return ((normalized(teacher_grad) - normalized(student_grad)) ** 2).sum(1).mean()


class Jacobian(Objective):
    """`kd_loss(z_S, z_T, y, τ, α) + λ·mean ‖ĝ_T − ĝ_S‖²`, ĝ the L2-normalised gradient of the explained output
    (margin / centred logit of the teacher's class, the SHAP game's scalar) w.r.t. the encoded inputs.
    Teacher gradients on the training rows are computed once per seed."""

    name = "jacobian"
    needs_gradients = True

    def __init__(self, tau: float = 4.0, alpha: float = 0.5, lam: float = 1.0):
        super().__init__(tau, alpha)
        self.lam = require_float("kd.lam", lam, 0.0)

    def settings(self) -> dict:
        return {**super().settings(), "lam": self.lam}

    def signals(self, teacher, X, y, n_classes, column_feature, output) -> TeacherSignals:
        logits = teacher.logits(X).astype(np.float32)
        W = output_weights(logits, output)
        return TeacherSignals({"teacher_logits": logits, "weights": W,
                               "teacher_grad": teacher_gradients(teacher.net_, X, W).astype(np.float32)})

    def loss(self, net, x, y, batch, constants, epoch):
        x = x.detach().requires_grad_(True)
        z = net(x)
        grad = torch.autograd.grad((z * batch["weights"]).sum(), x, create_graph=True)[0]
        return kd_loss(z, batch["teacher_logits"], y, self.tau, self.alpha) + self.lam * jacobian_term(
            grad, batch["teacher_grad"])



