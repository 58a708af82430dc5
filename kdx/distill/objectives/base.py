"""The interface every distillation objective implements."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from kdx.errors import ConfigError
from kdx.models.base import require_float


@dataclass
class TeacherSignals:
    """What the teacher contributes, computed once per seed on the training rows and shared by every KD
    student of that seed: per-row arrays (`rows`, sliced with each minibatch) and constants."""

    rows: dict[str, np.ndarray]
    constants: dict[str, np.ndarray] = field(default_factory=dict)
    resolved: dict = field(default_factory=dict)  # settings chosen from the data (e.g. label smoothing's ε)


class Objective:
    """A distillation loss for the student. Subclasses set `name`, implement `loss` and, where they can
    distil a tree student through soft labels, `soft_targets`.

    - `check` refuses a task or model the objective does not apply to, in one line, before any training;
    - `signals` computes the teacher's contribution once per seed (logits, gradients, attributions);
    - `loss` is the minibatch loss of a torch student (`net`) given the batch's slice of the signals.
    """

    name = "objective"
    needs_gradients = False  # needs a differentiable teacher and student (input gradients)
    soft_labels = False  # can distil a tree student through soft targets
    stacks = False  # its MLP students can train in a stacked pass (stacked_loss)
    # Why rows only the teacher labelled (y = −1, kdx.data.augment) cannot train this objective; "" = they can.
    no_generated_rows = ""
    # Whether `signals` depends on the teacher only through its logits on the rows (so that logits computed
    # otherwise, e.g. out of fold, can stand in: kdx.distill.labels.FixedLogits).
    logit_signals = True

    def __init__(self, tau: float = 4.0, alpha: float = 0.5):
        self.tau = require_float("kd.tau", tau, 0.0, low_open=True)
        self.alpha = require_float("kd.alpha", alpha, 0.0, 1.0)

    def settings(self) -> dict:
        """Everything that determines the objective (for cache keys and summaries)."""
        return {"name": self.name, "tau": self.tau, "alpha": self.alpha}

    def check(self, n_classes: int, teacher_family: str, student_family: str) -> None:
        if student_family != "torch" and not self.soft_labels:
            raise ConfigError(f"kd={self.name} trains through the student's loss and input gradients; a tree "
                              "student takes soft labels only: use kd=hinton or kd=label_smoothing")
        if self.needs_gradients and teacher_family != "torch":
            raise ConfigError(f"kd={self.name} needs the teacher's input gradients; a {teacher_family} teacher "
                              "has none: use kd=hinton, or an MLP teacher (teacher=dnn|mlp4)")

    def check_rows(self, augment: str, out_of_fold: bool) -> None:
        """Refuse, in one line, training on generated rows (`augment` names the augmenter; "none" = no rows) or
        on out-of-fold teacher logits where this objective cannot use them."""
        if augment != "none":
            if self.no_generated_rows:
                raise ConfigError(f"augment={augment} with kd={self.name}: {self.no_generated_rows}")
            if self.alpha == 1:
                raise ConfigError(f"augment={augment} with kd.alpha=1: the teacher's term has weight 0, so the rows it "
                                  "labels would teach the student nothing; set kd.alpha < 1 or augment=none")
        if out_of_fold and not self.logit_signals:
            raise ConfigError(f"kd.soft_labels=oof with kd={self.name}: out-of-fold teachers replace the teacher's "
                              "logits on its training rows, but this objective also matches the full teacher's input "
                              "gradients; use kd.soft_labels=insample, or kd=hinton")

    def signals(self, teacher, X: np.ndarray, y: np.ndarray, n_classes: int, column_feature: np.ndarray,
                output: str) -> TeacherSignals:
        return TeacherSignals({"teacher_logits": teacher.logits(X).astype(np.float32)})

    def loss(self, net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: dict[str, torch.Tensor],
             constants: dict[str, torch.Tensor], epoch: int) -> torch.Tensor:
        raise NotImplementedError

    def signals_key(self) -> tuple:
        """What `signals` depends on besides the teacher and the rows: the students of a stacked pass whose
        objectives give equal keys share one computation of them."""
        return (type(self).signals,)

    def stacked_loss(self, signals: TeacherSignals):
        """The loss as kdx.distill.stacked trains many students at once (kdx.distill.stacked.StudentLoss), for
        objectives with `stacks`, given this objective's `signals` (e.g. label smoothing's resolved ε)."""
        raise NotImplementedError(f"kd={self.name} has no stacked form: its students train one by one")

    def soft_targets(self, y: np.ndarray, signals: TeacherSignals, n_classes: int) -> np.ndarray:
        raise ConfigError(f"kd={self.name} has no soft-label form for tree students")


@dataclass(frozen=True)
class StudentLoss:
    """One student's loss in a stacked pass: `α·CE_ε + (1−α)·τ²·D`, batch means. CE_ε is the cross-entropy
    with labels smoothed by ε (torch's `label_smoothing`), D the distillation term: Hinton's
    KL(softmax(z_T/τ) ‖ softmax(z_S/τ)) (kdx.models.losses.kd_loss), or with `dkd=(a, b, warmup)` decoupled KD's
    w(epoch)·(a·TCKD + b·NCKD) (kdx.distill.objectives.dkd). α = 1, ε = 0 is the no-KD student; α = 1, ε > 0 label
    smoothing. `matching` ("jacobian" or "attribution") adds λ times that objective's input-gradient term
    (kdx.distill.objectives.jacobian / attribution). `resolved`: what the objective chose from the data (e.g. ε),
    recorded with the model."""

    tau: float = 1.0
    alpha: float = 1.0
    epsilon: float = 0.0
    dkd: tuple[float, float, int] | None = None
    matching: str | None = None
    lam: float = 0.0
    resolved: dict = field(default_factory=dict, compare=False)

    @property
    def uses_teacher(self) -> bool:
        return self.alpha < 1

    def describe(self) -> str:
        if self.matching:
            return f"{self.matching} λ={self.lam:g}, τ={self.tau:g}, α={self.alpha:g}"
        if self.uses_teacher:
            return ("DKD " if self.dkd else "") + f"τ={self.tau:g}, α={self.alpha:g}"
        return f"label smoothing ε={self.epsilon:.3g}" if self.epsilon else "no KD"
