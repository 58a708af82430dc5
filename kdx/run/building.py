"""Turn config nodes into models and objectives (Hydra `_target_`), with errors the user can act on."""

from __future__ import annotations

from omegaconf import DictConfig

from kdx.config import KD_LABEL_KEYS, instantiate_node, node_arguments
from kdx.data.augment import Augmenter, NoAugment
from kdx.distill.objectives import Hinton, Objective
from kdx.errors import ConfigError
from kdx.models import Classifier


def build_model(role: str, node: DictConfig, seed: int, device: str, limits: DictConfig) -> Classifier:
    """Build an unfitted teacher/student; `limits` caps epochs and boosting rounds for quick runs."""
    params = node_arguments(node)
    for key in ("epochs", "n_estimators"):
        cap = limits.get(key)
        if cap is not None and isinstance(params.get(key), int):
            params[key] = min(params[key], cap)
    model = instantiate_node(role, params, seed=seed, device=device)
    if not isinstance(model, Classifier):
        raise ConfigError(f"{role}: {params['_target_']} is not a kdx.models.Classifier")
    return model


def build_objective(node: DictConfig, regression: bool = False):
    """The distillation objective a `kd` node names (`_target_`), for a regression student when `regression`
    (refused in one line where it does not apply, Objective.for_regression); a node without one (configs
    written by kdx 0.1) is the study's Hinton loss with its τ and α."""
    params = {k: v for k, v in node_arguments(node).items() if k not in KD_LABEL_KEYS}
    if "_target_" not in params:
        objective = Hinton(params.get("tau", 4.0), params.get("alpha", 0.5))
    else:
        objective = instantiate_node("kd", params)
    if not isinstance(objective, Objective):
        raise ConfigError(f"kd: {params['_target_']} is not a kdx.distill.objectives.Objective")
    return objective.for_regression() if regression else objective


def build_augmenter(node: DictConfig | None) -> Augmenter:
    """The augmenter an `augment` node names (`_target_`); none (configs written before augmentation) is no
    augmentation."""
    if node is None:
        return NoAugment()
    augmenter = instantiate_node("augment", node_arguments(node))
    if not isinstance(augmenter, Augmenter):
        raise ConfigError(f"augment: {node.get('_target_')} is not a kdx.data.augment.Augmenter")
    return augmenter
