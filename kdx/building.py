"""Turn config nodes into datasets and models (Hydra `_target_`), with errors the user can act on."""

from __future__ import annotations

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


def build_dataset(node: DictConfig) -> TabularData:
    return _instantiate("dataset", _arguments(node))


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
