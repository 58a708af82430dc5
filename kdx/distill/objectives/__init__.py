"""Distillation objectives, chosen by the `kd` config group (`kd=hinton|label_smoothing|dkd|jacobian|
attribution`): each a small class in its own module behind the `Objective` interface, built from its YAML
by `_target_`. `kdx.kd_loss` (the study's loss) is the `hinton` objective's core and stays public."""

from kdx.distill.objectives.base import Objective, TeacherSignals
from kdx.distill.objectives.hinton import Hinton

__all__ = ["Objective", "TeacherSignals", "Hinton"]
