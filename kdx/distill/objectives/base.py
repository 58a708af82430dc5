"""The interface every distillation objective implements."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kdx.errors import ConfigError
from kdx.models.base import require_float
from kdx.models.losses import Loss, Step  # noqa: F401 — Step: what an objective's term receives

DEFAULT_TAU = 4.0  # kd.tau: null on a classification


@dataclass
class TeacherSignals:
    """What the teacher contributes, computed once per seed on the training rows and shared by every KD
    student of that seed: per-row arrays (`rows`, sliced with each minibatch) and constants."""

    rows: dict[str, np.ndarray]
    constants: dict[str, np.ndarray] = field(default_factory=dict)
    resolved: dict = field(default_factory=dict)  # settings chosen from the data (e.g. label smoothing's ε)


class Objective:
    """A distillation loss for the student: one module and one YAML (`kd=NAME`, found by `_target_`); the
    trainers never name it. Its loss is `α·CE_ε + (1−α)·τ²·KL + term` (kdx.models.losses.Loss): subclasses
    choose the parts the trainers compute themselves (`kl`, `smoothing`) and write the rest once, as `term`,
    which trains torch students one by one and stacked alike. Where they can distil a tree student through soft
    labels they implement `soft_targets`.

    - `check` refuses a task or model the objective does not apply to, in one line, before any training;
    - `signals` computes the teacher's contribution once per seed (logits, gradients, attributions);
    - `student_loss` is the student's `Loss` given those signals.
    """

    name = "objective"
    needs_gradients = False  # needs a differentiable teacher and student (input gradients)
    soft_labels = False  # can distil a tree student through soft targets
    kl = True  # Hinton's KL term is part of the loss (α < 1)
    # Why rows only the teacher labelled (y = −1, kdx.data.augment) cannot train this objective; "" = they can.
    no_generated_rows = ""
    # Whether `signals` depends on the teacher only through its logits on the rows (so that logits computed
    # otherwise, e.g. out of fold, can stand in: kdx.distill.labels.FixedLogits).
    logit_signals = True

    # Why a regression (one numeric output) cannot train this objective; "" = it can (τ then has no meaning).
    no_regression = ""

    def __init__(self, tau: float | None = None, alpha: float = 0.5):
        self.tau_given = tau is not None  # kd.tau: null = DEFAULT_TAU for classes, and no temperature for numbers
        self.tau = require_float("kd.tau", DEFAULT_TAU if tau is None else tau, 0.0, low_open=True)
        self.alpha = require_float("kd.alpha", alpha, 0.0, 1.0)
        self.regression = False

    def for_regression(self) -> Objective:
        """This objective for a regression student (set once, at the door): refused in one line where it does not
        apply, or where a temperature was given (a regression's soft target is the teacher's prediction itself)."""
        if self.no_regression:
            raise ConfigError(f"kd={self.name} does not apply to a regression: {self.no_regression}; use kd=hinton "
                              "(the student fits α·y + (1−α)·ŷ_T)")
        if self.tau_given:
            raise ConfigError(f"kd.tau={self.tau:g} with a regression: a temperature softens class probabilities, "
                              "and a regression student fits α·y + (1−α)·ŷ_T directly; leave kd.tau unset (null) and "
                              "set kd.alpha")
        self.regression, self.tau = True, None
        return self

    def settings(self) -> dict:
        """Everything that determines the objective (for cache keys and summaries); τ is None for a regression."""
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

    def signals_key(self) -> tuple:
        """What `signals` depends on besides the teacher and the rows: the students of a stacked pass whose
        objectives give equal keys share one computation of them."""
        return (type(self).signals,)

    # ---- the loss ----------------------------------------------------------------------------------------
    term = None  # the objective's own part of the loss: a staticmethod (settings, step) -> (students,) tensor

    def term_settings(self, signals: TeacherSignals | None) -> dict[str, float] | None:
        """The numbers `term` reads for this student (None: no term for these settings)."""
        return {}

    def smoothing(self, signals: TeacherSignals | None) -> float:
        """The label smoothing of the loss's cross-entropy (0: none)."""
        return 0.0

    def describe(self, signals: TeacherSignals | None) -> str:
        """How messages call this student's loss."""
        return f"α={self.alpha:g}" if self.regression else f"τ={self.tau:g}, α={self.alpha:g}"

    def student_loss(self, signals: TeacherSignals | None) -> Loss:
        """The student's loss (kdx.models.losses.Loss) given this objective's `signals`."""
        settings = self.term_settings(signals)
        term = type(self).term if settings is not None else None
        return Loss(self.alpha, DEFAULT_TAU if self.regression else self.tau, self.smoothing(signals), self.kl, term,
                    tuple((settings or {}).items()), bool(term and self.needs_gradients), self.describe(signals),
                    dict(signals.resolved) if signals is not None else {}, self.regression)

    def soft_targets(self, y: np.ndarray, signals: TeacherSignals, n_classes: int) -> np.ndarray:
        raise ConfigError(f"kd={self.name} has no soft-label form for tree students")

    def regression_targets(self, y: np.ndarray, signals: TeacherSignals) -> tuple[np.ndarray, np.ndarray]:
        """For a tree, booster or glass-box regression student: the target it fits per row (rows × 1) and the
        row's weight (kdx.models.soft_targets.regression_targets)."""
        raise ConfigError(f"kd={self.name} has no target form for tree students")
