"""The configuration's schema: a dataclass per fixed group, stored in Hydra's ConfigStore as the base of the root
config (conf/config.yaml names it first in its defaults), so a value of the wrong type is refused while the
config is composed, and each rule on a value is written once, in its dataclass's `__post_init__`, run when the
dataclass is built: by `kdx.config.validate` at the door (`OmegaConf.to_object`) and by code that builds the
settings itself. The groups that name a class (dataset, teacher, student, kd, augment) are checked by that
class's constructor, where the rule lives once too.

The values of a run's defaults, with their documentation, stay in conf/config.yaml; a dataclass's own defaults
serve code that builds the settings directly (tests, benchmarks, the Python API)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from hydra.core.config_store import ConfigStore

from kdx.errors import ConfigError

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
DEVICES = ("auto", "cpu", "cuda")  # a run's `device`; a model also takes cuda:N
# The metrics the statistics compare when present (alignment metrics exist for students only).
COMPARED_METRICS = ("accuracy", "ece", "nll", "macro_f1", "roc_auc", "brier", "teacher_kl", "r2", "rmse", "mae",
                    "teacher_rmse", "teacher_r2", "latency_ms",
                    "latency_batch_ms", "params", "flops", "size_bytes", "peak_mb_batch", "cosine", "cosine_global",
                    "mad", "mad_total", "topk_agreement", "spearman", "stability")
# Margins in units of the target's sd (a regression's errors): stats.margins.rmse = 0.05 is 0.05 sd.
SD_MARGINS = ("rmse", "mae", "teacher_rmse")
PROFILE_WEIGHTS = ("a_P", "b_C", "g_I")  # a trade-off profile's weights (kdx.analysis.tradeoff)


# ---- the rules, each a function of the key's name and value -------------------------------------------------
def number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def require_int(name: str, value, minimum: int = 1, nullable: bool = False) -> int | None:
    """`value` as an int when it is a whole number >= minimum (or None where `nullable`); else ConfigError naming
    `name`. The integer rule of every key and constructor argument."""
    if nullable and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}{' or null' if nullable else ''}, got {value!r}")
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


def one_of(name: str, value, choices) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}")


def probability(name: str, value, open_low: bool = True, open_high: bool = True) -> None:
    """A number in (0, 1), or with a closed end where asked."""
    low_ok = number(value) and (value > 0 if open_low else value >= 0)
    if not (low_ok and (value < 1 if open_high else value <= 1)):
        interval = f"{'(' if open_low else '['}0, 1{')' if open_high else ']'}"
        raise ConfigError(f"{name} must be a number in {interval}, got {value!r}")


def device(name: str, value, indexed: bool = False) -> None:
    """auto, cpu or cuda (and, where `indexed`, cuda:N)."""
    if value not in DEVICES and not (indexed and str(value).startswith("cuda:")):
        raise ConfigError(f"{name} must be auto, cpu or cuda{' (or cuda:N)' if indexed else ''}, got {value!r}")


# ---- the groups ------------------------------------------------------------------------------------------------
@dataclass
class SplitSettings:
    """holdout: every seed draws a stratified train/val/test split; repeated_cv: `folds` folds per seed."""

    GROUP: ClassVar[str] = "split"
    scheme: str = "holdout"
    folds: int = 5
    train: float = 0.7
    val: float = 0.15
    test: float = 0.15

    def __post_init__(self):
        fractions = [self.train, self.val, self.test]
        if not all(number(f) and 0 < f < 1 for f in fractions) or abs(sum(fractions) - 1) > 1e-9:
            raise ConfigError(f"split.train/val/test must each be in (0, 1) and sum to 1, got {fractions}")
        one_of("split.scheme", self.scheme, SCHEMES)
        require_int("split.folds", self.folds, minimum=2)


@dataclass
class MetricsSettings:
    GROUP: ClassVar[str] = "metrics"
    ece_bins: int = 15

    def __post_init__(self):
        require_int("metrics.ece_bins", self.ece_bins)


@dataclass
class LimitsSettings:
    """Caps for quick runs (None: no cap)."""

    GROUP: ClassVar[str] = "limits"
    rows: int | None = None
    epochs: int | None = None
    n_estimators: int | None = None

    def __post_init__(self):
        for key in ("rows", "epochs", "n_estimators"):
            require_int(f"limits.{key}", getattr(self, key), nullable=True)
        if self.rows is not None and self.rows < 30:
            raise ConfigError(f"limits.rows must be at least 30 to split 70/15/15, got {self.rows}")


@dataclass
class ProfileSettings:
    """The efficiency profile of every model (kdx.measure.efficiency)."""

    GROUP: ClassVar[str] = "profile"
    enabled: bool = True
    threads: int = 1
    warmup: int = 50
    repeats: int = 1000
    batch_size: int = 256
    memory: bool = True
    onnx: Any = "auto"  # onnxruntime latency of the exported model (kdx.deploy): auto (if installed) | true | false

    def __post_init__(self):
        for key in ("threads", "repeats", "batch_size"):
            require_int(f"profile.{key}", getattr(self, key))
        require_int("profile.warmup", self.warmup, minimum=0)
        if self.onnx not in ("auto", True, False):
            raise ConfigError(f"profile.onnx must be auto, true or false, got {self.onnx!r}")


@dataclass
class ExplainSettings:
    """SHAP alignment and stability (kdx.measure.explain)."""

    GROUP: ClassVar[str] = "explain"
    enabled: bool = True
    rows: int = 500
    background: int = 100
    top_k: int = 5
    stability_rows: int = 100
    stability_draws: int = 10
    noise_sigma: float = 0.1
    categorical_resample: float = 0.1
    output: str = "auto"
    method: str = "auto"
    permutations: int = 10
    players: str = "auto"

    def __post_init__(self):
        for key in ("rows", "background", "top_k", "stability_rows", "stability_draws", "permutations"):
            require_int(f"explain.{key}", getattr(self, key))
        require_float("explain.noise_sigma", self.noise_sigma, 0.0, low_open=True)
        one_of("explain.output", self.output, OUTPUTS)
        one_of("explain.players", self.players, PLAYERS)
        one_of("explain.method", self.method, METHODS)
        require_float("explain.categorical_resample", self.categorical_resample, 0.0, 1.0)


@dataclass
class StatsSettings:
    """Paired comparisons over seeds (kdx.analysis.stats)."""

    GROUP: ClassVar[str] = "stats"
    alpha: float = 0.05
    confidence: float = 0.95
    test: str = "corrected"
    correction: str = "holm"
    power: float = 0.8
    margins: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        for key in ("alpha", "confidence", "power"):
            probability(f"stats.{key}", getattr(self, key))
        one_of("stats.test", self.test, TESTS)
        one_of("stats.correction", self.correction, CORRECTIONS)
        if not isinstance(self.margins, dict):
            raise ConfigError(f"stats.margins must map metric names to margins, e.g. {{accuracy: 0.01}}; got "
                              f"{self.margins!r}")
        for metric, margin in self.margins.items():
            if metric not in COMPARED_METRICS:
                raise ConfigError(f"stats.margins.{metric}: not a compared metric; choose from "
                                  f"{', '.join(COMPARED_METRICS)}")
            if not number(margin) or margin <= 0:
                raise ConfigError(f"stats.margins.{metric} must be a number > 0, got {margin!r}")


@dataclass
class TradeoffSettings:
    """J = a_P·P − b_C·C + g_I·I per profile (kdx.analysis.tradeoff); the config key is `objective`."""

    GROUP: ClassVar[str] = "objective"
    cost: list[str] = field(default_factory=lambda: ["params", "flops"])
    profiles: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if not self.cost or any(c not in COST_CHOICES for c in self.cost):
            raise ConfigError(f"objective.cost must be a non-empty list of {', '.join(COST_CHOICES)}, "
                              f"got {self.cost!r}")
        for name, weights in self.profiles.items():
            if not isinstance(weights, dict) or set(weights) != set(PROFILE_WEIGHTS) or not all(
                    number(v) and v >= 0 for v in weights.values()):
                raise ConfigError(f"objective.profiles.{name} must set a_P, b_C and g_I to numbers >= 0, got "
                                  f"{weights!r}")


@dataclass
class CacheSettings:
    GROUP: ClassVar[str] = "cache"
    enabled: bool = True
    dir: str = ".kdx-cache"


@dataclass
class RunSettings:
    """The root config: the groups above, the groups that name a class (checked by it), and the run's own keys."""

    dataset: Any = None
    teacher: Any = None
    student: Any = None
    kd: Any = None
    augment: Any = None
    seeds: Any = field(default_factory=lambda: [0, 1, 2, 3, 4])  # checked by kdx.config.seeds_of
    device: str = "auto"
    split: SplitSettings = field(default_factory=SplitSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    limits: LimitsSettings = field(default_factory=LimitsSettings)
    profile: ProfileSettings = field(default_factory=ProfileSettings)
    explain: ExplainSettings = field(default_factory=ExplainSettings)
    stats: StatsSettings = field(default_factory=StatsSettings)
    objective: TradeoffSettings = field(default_factory=TradeoffSettings)
    cache: CacheSettings = field(default_factory=CacheSettings)
    threads: Any = "auto"  # auto | a positive integer (kdx.run.resources)
    on_inapplicable_objective: str = "fail"
    train_together: bool = True
    save_checkpoints: bool = True
    console: str = "summary"
    tracking: Any = None  # +tracking=mlflow

    def __post_init__(self):
        device("device", self.device)
        one_of("console", self.console, ("summary", "full"))
        one_of("on_inapplicable_objective", self.on_inapplicable_objective, ("fail", "skip"))


GROUPS = (SplitSettings, MetricsSettings, LimitsSettings, ProfileSettings, ExplainSettings, StatsSettings,
          TradeoffSettings, CacheSettings)

ConfigStore.instance().store(name="kdx_schema", node=RunSettings)
