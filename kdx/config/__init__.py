"""The run configuration: its schema (kdx.config.schema), validation of a composed config before any data is read
or model trained, and building the classes its nodes name."""

from __future__ import annotations

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from kdx.config.schema import (  # noqa: E402, F401 — the allowed values live with their rules
    COMPARED_METRICS,
    CORRECTIONS,
    COST_CHOICES,
    GROUPS,
    METHODS,
    OUTPUTS,
    PLAYERS,
    SCHEMES,
    TESTS,
    TIMED_COSTS,
    RunSettings,
    number,
    require_float,
    require_int,
)
from kdx.errors import ConfigError, KdxError

RUNNER_KEYS = ("name",)  # keys of dataset/teacher/student nodes that are not constructor arguments
# kd.* keys that say where the teacher's labels come from (read by the run, not the objective's constructor)
KD_LABEL_KEYS = ("soft_labels", "oof_folds")
SOFT_LABELS = ("insample", "oof")


# Targets that configs written before the package's layers (run folders' config.yaml) name: still built.
LEGACY_TARGETS = {f"kdx.datasets.{name}": f"kdx.data.{name}" for name in
                  ("load_adult", "load_breast_cancer", "load_csv", "load_wine_quality")}
LEGACY_TARGETS.update({f"kdx.objectives.{m}.{c}": f"kdx.distill.objectives.{m}.{c}" for m, c in (
    ("hinton", "Hinton"), ("label_smoothing", "LabelSmoothing"), ("dkd", "DKD"), ("jacobian", "Jacobian"),
    ("attribution", "Attribution"))})
LEGACY_TARGETS["kdx.report.ReportCallback"] = "kdx.analysis.report.ReportCallback"


def node_arguments(node: DictConfig) -> dict:
    """A config node as constructor arguments (without the keys only kdx reads, e.g. name)."""
    return {k: v for k, v in OmegaConf.to_container(node, resolve=True).items() if k not in RUNNER_KEYS}


def instantiate_node(role: str, params: dict, **extra):
    """Build `params['_target_']` (Hydra), every failure one line naming the role and the key to check."""
    params = {**params, "_target_": LEGACY_TARGETS.get(params.get("_target_"), params.get("_target_"))}
    try:
        return instantiate(params, **extra, _convert_="all")
    except InstantiationException as exc:
        cause = exc.__cause__ or exc
        if isinstance(cause, KdxError):
            raise type(cause)(f"{role}: {cause}") from None
        if isinstance(cause, TypeError) and "argument" in str(cause):
            raise ConfigError(f"{role}: {str(cause).split(': ', 1)[-1]} (check the keys under '{role}')") from None
        raise ConfigError(f"{role}: cannot build {params.get('_target_')}: {cause}") from None


def seeds_of(cfg: DictConfig) -> list[int]:
    raw = cfg.get("seeds")
    seeds = list(raw) if isinstance(raw, (ListConfig, list, tuple)) else [raw]
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise ConfigError(f"seeds must be a non-empty list of non-negative integers, e.g. seeds=[0,1,2]; got {raw!r}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds must be distinct, got {seeds}")
    return seeds


def units_of(cfg: DictConfig) -> list[int]:
    """The run's repetitions: its seeds (holdout), or for split.scheme=repeated_cv one unit per (seed, fold),
    numbered seed·folds + fold."""
    seeds = seeds_of(cfg)
    if cfg.split.get("scheme", "holdout") != "repeated_cv":
        return seeds
    k = cfg.split.folds
    return [s * k + f for s in seeds for f in range(k)]


def split_settings(cfg: DictConfig) -> dict:
    """Keyword arguments of kdx.data.split.make_split for this run."""
    return {"scheme": cfg.split.get("scheme", "holdout"), "folds": cfg.split.get("folds", 5),
            "fractions": (cfg.split.train, cfg.split.val, cfg.split.test)}


def stats_settings(cfg: DictConfig) -> dict:
    """The `stats` node as keyword arguments of kdx.analysis.stats.StatsSettings."""
    node = OmegaConf.to_container(cfg.stats, resolve=True)
    return {**node, "margins": dict(node.get("margins") or {})}


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError with one line naming the first invalid value: the groups that name a class must be
    there, then every fixed group's rules (kdx.config.schema) and the run's own keys. (A class a group names
    checks its own arguments when it is built, at the door: kdx.run.checks.)"""
    for group in ("dataset", "teacher", "student", "kd"):
        if not isinstance(cfg.get(group), DictConfig):
            raise ConfigError(f"config group '{group}' is missing; choose one with {group}=<option> (kdx run --help)")
    for group in ("dataset", "teacher", "student"):
        if "_target_" not in cfg[group]:
            raise ConfigError(f"{group} config has no _target_ (the class or loader to build)")
    missing = OmegaConf.missing_keys(cfg)
    if missing:
        raise ConfigError(f"required value(s) not set: {sorted(missing)}")
    if cfg.kd.get("soft_labels", "insample") not in SOFT_LABELS:
        raise ConfigError(f"kd.soft_labels must be one of {', '.join(SOFT_LABELS)}, got {cfg.kd.get('soft_labels')!r}")
    require_int("kd.oof_folds", cfg.kd.get("oof_folds", 5), minimum=2)
    augment = cfg.get("augment")
    if augment is not None and (not isinstance(augment, DictConfig) or "_target_" not in augment):
        raise ConfigError(f"augment must be a config group option (augment=none|munge|spunge|rows), got {augment!r}")
    seeds_of(cfg)
    for settings in GROUPS:  # each group's rules, as its dataclass checks them when built
        settings(**OmegaConf.to_container(cfg[settings.GROUP], resolve=True))
    RunSettings(**{k: cfg.get(k) for k in ("device", "console", "on_inapplicable_objective") if k in cfg})
    if cfg.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("device=cuda but no CUDA device is available; use device=auto or device=cpu")
