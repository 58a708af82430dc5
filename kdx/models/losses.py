"""The distillation loss of the study, and the form every student's loss takes (`Loss`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    targets: torch.Tensor,
    tau: float,
    alpha: float,
    epsilon: float = 0.0,
) -> torch.Tensor:
    """`α·CE(y, z_S) + (1−α)·τ²·KL(softmax(z_T/τ) ‖ softmax(z_S/τ))`, each term a batch mean: CE over the
    rows with a label, KL over every row (rows the teacher labelled for augmentation have y = −1).

    τ² multiplies the KL term at every α (Hinton et al.: it keeps the soft-target gradients on the scale
    of the hard-label ones as τ grows). With α = 1 the result is exactly the cross-entropy and
    `teacher_logits` may be None. `epsilon`: label smoothing of the cross-entropy (torch's), 0 in the study.
    """
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    ce = labelled_cross_entropy(student_logits, targets, epsilon)
    if alpha == 1.0:
        return ce
    if teacher_logits is None:
        raise ValueError("teacher_logits are required when alpha < 1")
    kl = F.kl_div(
        F.log_softmax(student_logits / tau, dim=-1),
        F.log_softmax(teacher_logits / tau, dim=-1),
        reduction="batchmean",
        log_target=True,
    )
    return alpha * ce + (1.0 - alpha) * tau**2 * kl


UNLABELLED = -1  # the label of a row only the teacher has labelled (kdx.data.augment)


def labelled_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, epsilon: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy (labels smoothed by `epsilon`, torch's `label_smoothing`) over the rows whose label is
    not UNLABELLED (0 when none is): exactly torch's `cross_entropy` when every row has one."""
    if bool((targets >= 0).all()):
        return F.cross_entropy(logits, targets, label_smoothing=epsilon)
    count = (targets >= 0).sum().clamp_min(1)
    return F.cross_entropy(logits, targets, ignore_index=UNLABELLED, reduction="sum",
                           label_smoothing=epsilon) / count


def labelled_squared_error(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean squared error of (rows, 1) outputs to a standardized regression target, over the rows that have one
    (a row only the teacher labelled has NaN; 0 when none has)."""
    z = outputs[:, 0]
    labelled = ~torch.isnan(targets)
    if bool(labelled.all()):
        return F.mse_loss(z, targets)
    return ((z - torch.nan_to_num(targets)) ** 2 * labelled).sum() / labelled.sum().clamp_min(1)


def regression_kd_loss(outputs: torch.Tensor, teacher: torch.Tensor | None, targets: torch.Tensor,
                       alpha: float) -> torch.Tensor:
    """The regression form of distillation: `α·MSE(y, f) + (1−α)·MSE(ŷ_T, f)`, each a batch mean (the label's
    over the rows with a label, the teacher's over every row), in the target's standardized units. Its minimizer
    per row is α·y + (1−α)·ŷ_T; there is no temperature. α = 1 is the plain squared error (`teacher` may be
    None)."""
    value = labelled_squared_error(outputs, targets)
    if alpha == 1.0:
        return value
    if teacher is None:
        raise ValueError("teacher outputs are required when alpha < 1")
    return alpha * value + (1.0 - alpha) * F.mse_loss(outputs, teacher)


@dataclass(frozen=True)
class Loss:
    """One student's training loss, as both trainers compute it — one by one (`OneStudentLoss`, kdx.models.mlp)
    and many students at once (kdx.distill.stacked):

        α·CE_ε(z, y) + (1−α)·τ²·KL(softmax(z_T/τ) ‖ softmax(z/τ)) + term(settings, step)

    each a batch mean (CE over the rows with a label, KL over every row); for a regression (`regression`) the first
    two are `regression_kd_loss`'s squared errors to the label and to the teacher instead. CE_ε is torch's
    cross-entropy with label smoothing ε; the KL term is on when `kl` (Hinton's loss) and α < 1. These two the
    trainers compute themselves (the stacked one fused, without autograd when no student has a term). `term` is the
    rest of an objective's loss, written once (kdx.distill.objectives): a function of `settings` — its per-student
    numbers, each given as a (students,) float32 tensor — and a `Step`, returning one value per student; the stacked
    trainer calls it once for all its students. `Loss()` is the no-KD student."""

    alpha: float = 1.0
    tau: float = 1.0
    epsilon: float = 0.0
    kl: bool = True
    term: Callable | None = None
    settings: tuple = ()  # ((name, value), ...): the term's numbers for this student
    gradients: bool = False  # the term reads the student's input gradients (Step.gradients)
    label: str = "no KD"  # how messages call this loss
    resolved: dict = field(default_factory=dict, compare=False)  # settings the objective chose from the data
    regression: bool = False  # one standardized output, squared errors instead of CE and KL

    @property
    def uses_teacher(self) -> bool:
        return self.alpha < 1 and (self.kl or self.term is not None)

    @property
    def hinton(self) -> bool:
        """Whether Hinton's KL term counts in this loss."""
        return self.kl and self.alpha < 1


@dataclass
class Step:
    """What an objective's `term` sees of one minibatch, for a group of G students with the same term: their
    logits class-major (G, classes, rows), the labels (UNLABELLED for rows only the teacher labelled), the
    teacher's logits (rows, classes) or None, the epoch (from 1), this minibatch's rows of the teacher's
    per-row signals and its constants (kdx.distill.objectives.TeacherSignals), the rows `x` (rows, inputs), and
    `gradients(w)`: each student's input gradients ∂(z·w)/∂x (G, rows, inputs), differentiable in its weights
    (w: (rows, classes) output weights), when the loss asked for them."""

    logits: torch.Tensor
    y: torch.Tensor
    teacher: torch.Tensor | None
    epoch: int
    rows: dict
    constants: dict
    x: torch.Tensor
    gradients: Callable[[torch.Tensor], torch.Tensor] | None = None


class OneStudentLoss:
    """A `Loss` for one torch network, minibatch by minibatch: what `MLPClassifier.fit` minimizes (its CE and
    Hinton's term are `kd_loss`'s)."""

    def __init__(self, loss: Loss, device):
        self.loss = loss
        self.settings = {k: torch.tensor([v], dtype=torch.float32, device=device) for k, v in loss.settings}

    def __call__(self, net, x: torch.Tensor, y: torch.Tensor, rows: dict, constants: dict, epoch: int) -> torch.Tensor:
        spec = self.loss
        if spec.gradients:
            x = x.detach().requires_grad_(True)
        z = net(x)
        teacher = rows.get("teacher_logits")
        if spec.hinton:
            value = (regression_kd_loss(z, teacher, y, spec.alpha) if spec.regression
                     else kd_loss(z, teacher, y, spec.tau, spec.alpha, spec.epsilon))
        else:
            value = labelled_squared_error(z, y) if spec.regression else labelled_cross_entropy(z, y, spec.epsilon)
            if spec.alpha != 1:
                value = spec.alpha * value
        if spec.term is not None:
            def gradients(w):
                return torch.autograd.grad((z * w).sum(), x, create_graph=True)[0][None]

            step = Step(z.T[None], y, teacher, epoch, rows, constants, x, gradients if spec.gradients else None)
            value = value + spec.term(self.settings, step)[0]
        return value
