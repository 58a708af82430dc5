"""Turn config nodes into datasets and models (Hydra `_target_`), with errors the user can act on."""

from __future__ import annotations

import json
from pathlib import Path

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from kdx.config import RUNNER_KEYS
from kdx.datasets import TabularData
from kdx.errors import ConfigError, KdxError
from kdx.models import Classifier


def _arguments(node: DictConfig) -> dict:
    return {k: v for k, v in OmegaConf.to_container(node, resolve=True).items() if k not in RUNNER_KEYS}


def _instantiate(role: str, params: dict, **extra):
    try:
        return instantiate(params, **extra, _convert_="all")
    except InstantiationException as exc:
        cause = exc.__cause__ or exc
        if isinstance(cause, KdxError):
            raise type(cause)(f"{role}: {cause}") from None
        if isinstance(cause, TypeError) and "argument" in str(cause):
            raise ConfigError(f"{role}: {str(cause).split(': ', 1)[-1]} (check the keys under '{role}')") from None
        raise ConfigError(f"{role}: cannot build {params.get('_target_')}: {cause}") from None


_LOADED: dict[str, TabularData] = {}


def build_dataset(node: DictConfig) -> TabularData:
    """Load (and check) the dataset a config names; within one process (e.g. the jobs of a sweep run by
    Hydra's basic launcher) the same config is loaded once. A CSV is keyed by its size and mtime too."""
    args = _arguments(node)
    path = args.get("path")
    stamp = None
    if path and Path(str(path)).expanduser().is_file():
        st = Path(str(path)).expanduser().stat()
        stamp = (st.st_size, st.st_mtime_ns)
    key = json.dumps([args, stamp], sort_keys=True, default=str)
    if key not in _LOADED:
        _LOADED.clear()  # keep one table in memory, not one per config ever seen
        _LOADED[key] = _instantiate("dataset", args)
    return _LOADED[key]


def build_model(role: str, node: DictConfig, seed: int, device: str, limits: DictConfig) -> Classifier:
    """Build an unfitted teacher/student; `limits` caps epochs and boosting rounds for quick runs."""
    params = _arguments(node)
    for key in ("epochs", "n_estimators"):
        cap = limits.get(key)
        if cap is not None and isinstance(params.get(key), int):
            params[key] = min(params[key], cap)
    model = _instantiate(role, params, seed=seed, device=device)
    if not isinstance(model, Classifier):
        raise ConfigError(f"{role}: {params['_target_']} is not a kdx.models.Classifier")
    return model


def build_objective(node: DictConfig):
    """The distillation objective a `kd` node names (`_target_`); a node without one (configs written by
    kdx 0.1) is the study's Hinton loss with its τ and α."""
    from kdx.objectives import Hinton, Objective

    params = _arguments(node)
    if "_target_" not in params:
        return Hinton(params.get("tau", 4.0), params.get("alpha", 0.5))
    objective = _instantiate("kd", params)
    if not isinstance(objective, Objective):
        raise ConfigError(f"kd: {params['_target_']} is not a kdx.objectives.Objective")
    return objective
