"""Decoupled knowledge distillation (Zhao et al. 2022): target-class and non-target-class terms."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdx.distill.objectives.base import Objective
from kdx.errors import ConfigError
from kdx.models.base import require_float, require_int

MASK = 1000.0  # subtracted from the target logit to take it out of the non-target softmax


def dkd_terms(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
              tau: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per row: TCKD = KL(b_T ‖ b_S) over (target, rest) at temperature τ, NCKD = KL(p̂_T ‖ p̂_S) over the
    non-target classes, and the teacher's target probability p_t. KL(p_T ‖ p_S) = TCKD + (1 − p_t)·NCKD.
    Classes are the last dimension; leading dimensions broadcast (kdx.distill.stacked passes K students'
    logits (K, rows, classes) with the teacher's (1, rows, classes) and τ as a (K, 1, 1) tensor)."""
    onehot = F.one_hot(targets, student_logits.shape[-1]).to(student_logits.dtype)
    p_s = F.softmax(student_logits / tau, dim=-1)
    p_t = F.softmax(teacher_logits / tau, dim=-1)
    pt_s, pt_t = (p_s * onehot).sum(-1), (p_t * onehot).sum(-1)
    b_s = torch.stack([pt_s, 1 - pt_s], -1).clamp_min(1e-12)
    b_t = torch.stack([pt_t, 1 - pt_t], -1).clamp_min(1e-12)
    tckd = (b_t * (b_t.log() - b_s.log())).sum(-1)
    log_q_s = F.log_softmax(student_logits / tau - MASK * onehot, dim=-1)
    log_q_t = F.log_softmax(teacher_logits / tau - MASK * onehot, dim=-1)
    nckd = (log_q_t.exp() * (log_q_t - log_q_s)).sum(-1)
    return tckd, nckd, pt_t


class DKD(Objective):
    """`α·CE + (1−α)·τ²·w(epoch)·(dkd_alpha·TCKD + dkd_beta·NCKD)`, batch means, with w rising linearly
    from 1/warmup to 1 over the first `warmup` epochs. Multiclass only: with two classes the non-target
    distribution has a single class, NCKD is identically zero and β would silently do nothing."""

    name = "dkd"
    no_regression = ("DKD splits the teacher's class probabilities into the target class and the others, and a "
                     "regression has no classes")
    kl = False  # DKD's term replaces Hinton's
    no_generated_rows = ("DKD splits the teacher's distribution at each row's true class, which rows the teacher "
                         "labelled do not have; use kd=hinton (or jacobian, attribution) with augmentation")

    def __init__(self, tau: float = 4.0, alpha: float = 0.5, dkd_alpha: float = 1.0, dkd_beta: float = 8.0,
                 warmup: int = 5):
        super().__init__(tau, alpha)
        self.dkd_alpha = require_float("kd.dkd_alpha", dkd_alpha, 0.0)
        self.dkd_beta = require_float("kd.dkd_beta", dkd_beta, 0.0)
        self.warmup = require_int("kd.warmup", warmup, minimum=0)

    def settings(self) -> dict:
        return {**super().settings(), "dkd_alpha": self.dkd_alpha, "dkd_beta": self.dkd_beta,
                "warmup": self.warmup}

    def check(self, n_classes, teacher_family, student_family):
        super().check(n_classes, teacher_family, student_family)
        if n_classes < 3:
            raise ConfigError("kd=dkd needs 3 or more classes: with 2, the non-target term (NCKD) is a KL "
                              "between one-class distributions, always 0, so DKD would silently become its "
                              "target-class term alone; use kd=hinton for binary tasks")

    def term_settings(self, signals):
        if self.alpha == 1:
            return None  # the teacher's weight is 0: the no-KD loss
        return {"tau": self.tau, "alpha": self.alpha, "dkd_alpha": self.dkd_alpha, "dkd_beta": self.dkd_beta,
                "warmup": self.warmup}

    def describe(self, signals):
        return "DKD " + super().describe(signals)

    @staticmethod
    def term(settings, step):
        """(1−α)·τ²·w(epoch)·(dkd_alpha·mean TCKD + dkd_beta·mean NCKD) per student."""
        tau, warmup = settings["tau"], settings["warmup"]
        tckd, nckd, _ = dkd_terms(step.logits.transpose(1, 2), step.teacher[None], step.y, tau[:, None, None])
        ramp = torch.where(warmup > 0, (step.epoch / warmup.clamp_min(1)).clamp(max=1.0), 1.0)
        kd = tau**2 * ramp * (settings["dkd_alpha"] * tckd.mean(1) + settings["dkd_beta"] * nckd.mean(1))
        return (1 - settings["alpha"]) * kd
