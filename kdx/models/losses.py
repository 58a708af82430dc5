"""The distillation loss of the study."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    targets: torch.Tensor,
    tau: float,
    alpha: float,
) -> torch.Tensor:
    """`α·CE(y, z_S) + (1−α)·τ²·KL(softmax(z_T/τ) ‖ softmax(z_S/τ))`, each term a batch mean: CE over the
    rows with a label, KL over every row (rows the teacher labelled for augmentation have y = −1).

    τ² multiplies the KL term at every α (Hinton et al.: it keeps the soft-target gradients on the scale
    of the hard-label ones as τ grows). With α = 1 the result is exactly the cross-entropy and
    `teacher_logits` may be None.
    """
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    ce = labelled_cross_entropy(student_logits, targets)
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


def labelled_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the rows whose label is not UNLABELLED (0 when none is): exactly torch's
    `cross_entropy` when every row has one."""
    if bool((targets >= 0).all()):
        return F.cross_entropy(logits, targets)
    count = (targets >= 0).sum().clamp_min(1)
    return F.cross_entropy(logits, targets, ignore_index=UNLABELLED, reduction="sum") / count
