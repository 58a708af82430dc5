"""Gradient-boosting libraries (XGBoost, LightGBM, CatBoost) behind kdx's Classifier interface.

Each library is one small module (kdx.models.xgboost_model, lightgbm_model, catboost_model) that trains
its booster and reads its trees into kdx.models.ensemble.TreeEnsemble; everything else — KD through
soft labels, logits, parameter and operation counts, explanations, ONNX export — is shared here.
"""

from __future__ import annotations

import importlib.util
import time
from abc import abstractmethod
from pathlib import Path

import joblib
import numpy as np
import torch

from kdx.errors import ConfigError, MissingExtra
from kdx.models.base import Classifier, require_float, require_int
from kdx.models.ensemble import TreeEnsemble
from kdx.models.soft_targets import hard_targets, logit_targets, regression_targets, weighted_rows

KD_FITS = ("soft_rows", "logits")


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def require_library(module: str, option: str, extra: str = "boosters") -> None:
    if not installed(module):
        raise MissingExtra(f"{option} needs {module}: pip install 'kdx[{extra}]' (or make install)")


class BoosterClassifier(Classifier):
    """`n_estimators` boosting rounds (the study's GBT(200)); early stopping on the validation split only and
    only when `early_stopping_rounds` is set (off by default, so the study's teacher stays comparable).
    Trained on the CPU with the run's thread count and seed: the same seed gives the same model. The raw
    margins are the logits (binary: [0, z]). KD (as a student) fits the blended soft labels as weighted
    duplicated rows, as kdx's other tree models do (`kd_fit=soft_rows`), or (`kd_fit=logits`, LightGBM and
    XGBoost) regresses its margins on the soft targets' logits (kdx.models.soft_targets.logit_targets: the
    teacher's logits blended with the hard label), squared error weighted by each row's share of the loss; the
    no-KD twin is the library's usual classifier either way. With one output (a regression) every booster fits the
    standardized target by squared error (`_train_logits`; KD: α·y + (1−α)·ŷ_T, kdx.models.soft_targets), its raw
    margin the prediction."""

    library = ""  # the Python module
    option = ""  # the config option that builds it (teacher=...)
    extra = "boosters"  # the kdx extra that installs it
    fits_logits = False  # implements _train_logits (kd_fit=logits)

    def __init__(self, n_estimators: int = 200, learning_rate: float = 0.1, early_stopping_rounds: int | None = None,
                 seed: int = 0, device: str = "cpu", kd_fit: str = "soft_rows"):
        require_library(self.library, self.option, self.extra)
        if kd_fit not in KD_FITS:
            raise ConfigError(f"kd_fit must be one of {', '.join(KD_FITS)}, got {kd_fit!r}")
        if kd_fit == "logits" and not self.fits_logits:
            raise ConfigError(f"kd_fit=logits needs a booster that can regress margins (lightgbm, xgboost), not "
                              f"{self.library}")
        self.kd_fit = kd_fit
        self.n_estimators = require_int("n_estimators", n_estimators)
        self.learning_rate = require_float("learning_rate", learning_rate, 0.0, low_open=True)
        self.early_stopping_rounds = (None if early_stopping_rounds is None
                                      else require_int("early_stopping_rounds", early_stopping_rounds))
        self.seed = require_int("seed", seed, minimum=0)
        self.device = device  # boosters train on the CPU whatever the run's device

    @property
    def family(self) -> str:
        return self.option.split("=")[-1]

    def get_params(self) -> dict:
        return {"n_estimators": self.n_estimators, "learning_rate": self.learning_rate,
                "early_stopping_rounds": self.early_stopping_rounds, "seed": self.seed,
                **({"kd_fit": self.kd_fit} if getattr(self, "kd_fit", "soft_rows") != "soft_rows" else {})}

    @staticmethod
    def threads() -> int:
        # kdx sets torch's thread count to this job's share of the machine (kdx.run.protocol.resolve_threads).
        return max(1, torch.get_num_threads())

    def fit(self, X, y, X_val, y_val, n_classes, objective=None, signals=None):
        start = time.perf_counter()
        self.n_classes_ = n_classes
        stop = self.early_stopping_rounds is not None and X_val is not None
        if n_classes == 1:
            targets, weight = regression_targets(y) if objective is None else objective.regression_targets(y, signals)
            self.model_ = self._train_logits(np.asarray(X, np.float32), targets, weight, 1)
            stop = False
        elif objective is not None and getattr(self, "kd_fit", "soft_rows") == "logits":
            q = objective.soft_targets(y, signals, n_classes)
            weight = q.sum(1)
            targets = logit_targets(q / weight[:, None])
            self.model_ = self._train_logits(np.asarray(X, np.float32), targets, weight, n_classes)
        else:
            q = hard_targets(y, n_classes) if objective is None else objective.soft_targets(y, signals, n_classes)
            Xw, yw, w = weighted_rows(np.asarray(X, np.float32), q)
            self.model_ = self._train(Xw, yw, w, np.asarray(X_val, np.float32) if stop else None,
                                      None if not stop else np.asarray(y_val), n_classes)
        self.ensemble_ = self._ensemble(np.asarray(X, np.float32)[:512])
        self.ensemble_.regression = n_classes == 1
        self.history_ = {"fit_seconds": time.perf_counter() - start, "train_device": "cpu",
                         "rounds": self._rounds(), "early_stopped": stop}
        return self

    @abstractmethod
    def _train(self, X, y, w, X_val, y_val, n_classes):
        """The fitted library model (early stopping on (X_val, y_val) when they are given)."""
        ...

    def _train_logits(self, X, targets, weight, n_classes):
        """The library model fitted by weighted squared error to `targets` (rows × outputs: 1 binary, else
        classes), `n_estimators` rounds (no early stopping: validation rows have labels, not targets)."""
        raise NotImplementedError

    @staticmethod
    def squared_error(targets: np.ndarray, weight: np.ndarray):
        """Gradient and hessian of Σ_i w_i·½‖f_i − t_i‖² at margins f, in the shape of the margins given."""
        def gradient(margins):
            f = np.asarray(margins, np.float64).reshape(targets.shape)
            grad = (f - targets) * weight[:, None]
            hess = np.broadcast_to(weight[:, None], targets.shape).copy()
            shape = np.shape(margins)
            return grad.reshape(shape), hess.reshape(shape)
        return gradient

    @abstractmethod
    def _raw(self, X: np.ndarray) -> np.ndarray:
        """The library's raw margins, (rows,) for binary or (rows, classes)."""
        ...

    @abstractmethod
    def _ensemble(self, X: np.ndarray) -> TreeEnsemble:
        """The trees read into kdx's representation (X: rows to check the reading against `_raw`)."""
        ...

    @abstractmethod
    def _rounds(self) -> int:
        ...

    @abstractmethod
    def _native_bytes(self) -> bytes:
        """The model in the library's own format (what a deployment of the booster ships)."""
        ...

    def logits(self, X: np.ndarray) -> np.ndarray:
        raw = np.asarray(self._raw(np.asarray(X, np.float32)), dtype=np.float64)
        if self.n_classes_ == 1:
            return raw.reshape(-1, 1)
        if raw.ndim == 1 or raw.shape[1] == 1:
            raw = raw.reshape(-1)
            return np.column_stack([np.zeros_like(raw), raw])
        return raw

    def ensemble(self) -> TreeEnsemble:
        return self.ensemble_

    def n_params(self) -> int:
        """As the HistGBT teacher: per split node its feature and threshold, per leaf its value, the base."""
        return self.ensemble_.n_params()

    def flops(self) -> float:
        return self.ensemble_.flops()

    def size_bytes(self) -> int:
        return len(self._native_bytes())

    def memory_bytes(self) -> int:
        return self.ensemble_.memory_bytes()

    def save(self, stem: Path) -> Path:
        path = Path(stem).with_suffix(".joblib")
        joblib.dump(self, path, compress=3)
        return path
