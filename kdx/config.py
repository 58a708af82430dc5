"""Validation of a composed run configuration, before any data is read or model trained."""

from __future__ import annotations

import math

import numpy as np
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from kdx.errors import ConfigError, KdxError

OUTPUTS = ("auto", "margin", "centred", "raw")
METHODS = ("auto", "permutation", "exact")
PLAYERS = ("auto", "columns", "features")
COST_CHOICES = ("params", "flops", "latency_ms", "latency_batch_ms", "size_bytes", "peak_mb_batch", "ort_latency_ms",
                "ort_latency_batch_ms", "onnx_bytes")
# measured, so noisy: not for selection
TIMED_COSTS = ("latency_ms", "latency_batch_ms", "peak_mb_batch", "ort_latency_ms", "ort_latency_batch_ms")

SCHEMES = ("holdout", "repeated_cv")  # split.scheme (kdx.data.split)
TESTS = ("corrected", "paired")  # stats.test (kdx.analysis.stats)
CORRECTIONS = ("holm", "none")  # stats.correction
# The metrics the statistics compare when present (alignment metrics exist for students only).
COMPARED_METRICS = ("accuracy", "ece", "nll", "macro_f1", "roc_auc", "brier", "teacher_kl", "latency_ms",
                    "latency_batch_ms", "params", "flops", "size_bytes", "peak_mb_batch", "cosine", "cosine_global",
                    "mad", "mad_total", "topk_agreement", "spearman", "stability")
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


def require_int(name: str, value, minimum: int = 1) -> int:
    """`value` as an int when it is a whole number >= minimum; else ConfigError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def require_float(name: str, value, low: float, high: float | None = None, low_open: bool = False) -> float:
    """`value` as a float when it is a finite number in the range; else ConfigError naming `name` and the range."""
    ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool) and np.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (high is None or value <= high)
    if not ok:
        bound = f"{'>' if low_open else '>='} {low}" + (f" and <= {high}" if high is not None else "")
        raise ConfigError(f"{name} must be a number {bound}, got {value!r}")
    return float(value)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _int_at_least(name: str, value, minimum: int = 1, nullable: bool = False) -> None:
    if nullable and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ConfigError(f"{name} must be {what}{' or null' if nullable else ''}, got {value!r}")


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


def _validate_stats(stats: DictConfig) -> None:
    for key in ("alpha", "confidence", "power"):
        value = stats.get(key)
        if not _number(value) or not 0 < value < 1:
            raise ConfigError(f"stats.{key} must be a number in (0, 1), got {value!r}")
    if stats.get("test") not in TESTS:
        raise ConfigError(f"stats.test must be one of {', '.join(TESTS)}, got {stats.get('test')!r}")
    if stats.get("correction") not in CORRECTIONS:
        raise ConfigError(f"stats.correction must be one of {', '.join(CORRECTIONS)}, got {stats.get('correction')!r}")
    margins = stats.get("margins") or {}
    if not isinstance(margins, DictConfig):
        raise ConfigError(f"stats.margins must map metric names to margins, e.g. {{accuracy: 0.01}}; got {margins!r}")
    for metric, margin in margins.items():
        if metric not in COMPARED_METRICS:
            raise ConfigError(f"stats.margins.{metric}: not a compared metric; choose from "
                              f"{', '.join(COMPARED_METRICS)}")
        if not _number(margin) or margin <= 0:
            raise ConfigError(f"stats.margins.{metric} must be a number > 0, got {margin!r}")


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError with one line naming the first invalid value."""
    for group in ("dataset", "teacher", "student", "kd"):
        if not isinstance(cfg.get(group), DictConfig):
            raise ConfigError(f"config group '{group}' is missing; choose one with {group}=<option> (kdx run --help)")
    for group in ("dataset", "teacher", "student"):
        if "_target_" not in cfg[group]:
            raise ConfigError(f"{group} config has no _target_ (the class or loader to build)")
    missing = OmegaConf.missing_keys(cfg)
    if missing:
        raise ConfigError(f"required value(s) not set: {sorted(missing)}")
    tau, alpha = cfg.kd.get("tau"), cfg.kd.get("alpha")
    if not _number(tau) or tau <= 0:
        raise ConfigError(f"kd.tau must be a number > 0, got {tau!r}")
    if not _number(alpha) or not 0 <= alpha <= 1:
        raise ConfigError(f"kd.alpha must be a number in [0, 1], got {alpha!r}")
    if cfg.kd.get("soft_labels", "insample") not in SOFT_LABELS:
        raise ConfigError(f"kd.soft_labels must be one of {', '.join(SOFT_LABELS)}, got {cfg.kd.get('soft_labels')!r}")
    _int_at_least("kd.oof_folds", cfg.kd.get("oof_folds", 5), minimum=2)
    augment = cfg.get("augment")
    if augment is not None and (not isinstance(augment, DictConfig) or "_target_" not in augment):
        raise ConfigError(f"augment must be a config group option (augment=none|munge|spunge|rows), got {augment!r}")
    seeds_of(cfg)
    fractions = [cfg.split.get(k) for k in ("train", "val", "test")]
    if not all(_number(f) and 0 < f < 1 for f in fractions) or abs(sum(fractions) - 1) > 1e-9:
        raise ConfigError(f"split.train/val/test must each be in (0, 1) and sum to 1, got {fractions}")
    if cfg.split.get("scheme", "holdout") not in SCHEMES:
        raise ConfigError(f"split.scheme must be one of {', '.join(SCHEMES)}, got {cfg.split.get('scheme')!r}")
    _int_at_least("split.folds", cfg.split.get("folds", 5), minimum=2)
    if cfg.device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"device must be auto, cpu or cuda, got {cfg.device!r}")
    if cfg.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("device=cuda but no CUDA device is available; use device=auto or device=cpu")
    _int_at_least("metrics.ece_bins", cfg.metrics.get("ece_bins"))
    for key in ("rows", "epochs", "n_estimators"):
        _int_at_least(f"limits.{key}", cfg.limits.get(key), nullable=True)
    for key in ("threads", "repeats", "batch_size"):
        _int_at_least(f"profile.{key}", cfg.profile.get(key))
    _int_at_least("profile.warmup", cfg.profile.get("warmup"), minimum=0)
    if cfg.profile.get("onnx", "auto") not in ("auto", True, False):
        raise ConfigError(f"profile.onnx must be auto, true or false, got {cfg.profile.get('onnx')!r}")
    ex = cfg.explain
    for key in ("rows", "background", "top_k", "stability_rows", "stability_draws", "permutations"):
        _int_at_least(f"explain.{key}", ex.get(key))
    if not _number(ex.get("noise_sigma")) or ex.noise_sigma <= 0:
        raise ConfigError(f"explain.noise_sigma must be a number > 0, got {ex.get('noise_sigma')!r}")
    if ex.get("output") not in OUTPUTS:
        raise ConfigError(f"explain.output must be one of {', '.join(OUTPUTS)}, got {ex.get('output')!r}")
    if ex.get("players", "auto") not in PLAYERS:
        raise ConfigError(f"explain.players must be one of {', '.join(PLAYERS)}, got {ex.get('players')!r}")
    if ex.get("method") not in METHODS:
        raise ConfigError(f"explain.method must be one of {', '.join(METHODS)}, got {ex.get('method')!r}")
    _validate_stats(cfg.stats)
    if cfg.get("console", "summary") not in ("summary", "full"):
        raise ConfigError(f"console must be summary or full, got {cfg.get('console')!r}")
    if cfg.get("on_inapplicable_objective", "fail") not in ("fail", "skip"):
        raise ConfigError(f"on_inapplicable_objective must be fail or skip, got {cfg.on_inapplicable_objective!r}")
    resample = ex.get("categorical_resample")
    if not _number(resample) or not 0 <= resample <= 1:
        raise ConfigError(f"explain.categorical_resample must be a probability in [0, 1], got {resample!r}")
    if not cfg.objective.get("cost") or any(c not in COST_CHOICES for c in cfg.objective.cost):
        raise ConfigError(f"objective.cost must be a non-empty list of {', '.join(COST_CHOICES)}, "
                          f"got {cfg.objective.get('cost')!r}")
    for name, weights in (cfg.objective.get("profiles") or {}).items():
        if not isinstance(weights, DictConfig) or set(weights) != {"a_P", "b_C", "g_I"} or not all(
                _number(v) and v >= 0 for v in weights.values()):
            raise ConfigError(f"objective.profiles.{name} must set a_P, b_C and g_I to numbers >= 0, got "
                              f"{OmegaConf.to_container(weights) if isinstance(weights, DictConfig) else weights!r}")
    if cfg.limits.get("rows") is not None and cfg.limits.rows < 30:
        raise ConfigError(f"limits.rows must be at least 30 to split 70/15/15, got {cfg.limits.rows}")
