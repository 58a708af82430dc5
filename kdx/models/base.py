"""The interface every teacher and student implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
from scipy.special import softmax

from kdx.config import require_float, require_int  # noqa: F401 — the models' parameter rules


class Classifier(ABC):
    """A classifier over preprocessed float32 rows whose outputs are logits (pre-softmax scores).

    `fit` receives the validation rows for early stopping / checkpoint selection and, for distillation,
    the teacher's logits on the training rows with the KD temperature and weight (the study's loss), or a
    distillation `objective` (kdx.distill.objectives) with the teacher's per-seed `signals`.
    """

    family: str = ""

    @abstractmethod
    def fit(
        self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray, y_val: np.ndarray, n_classes: int,
        teacher_logits: np.ndarray | None = None, tau: float = 1.0, alpha: float = 1.0, objective=None,
        signals=None,
    ) -> Classifier: ...

    @abstractmethod
    def logits(self, X: np.ndarray) -> np.ndarray: ...

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return softmax(self.logits(X), axis=1)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.logits(X).argmax(axis=1)

    def prediction_call(self, X: np.ndarray):
        """A no-argument call of what a user runs on these rows, for timing: `predict_proba(X)` (a model
        with an input of its own builds it here, outside the timing)."""
        return lambda: self.predict_proba(X)

    @abstractmethod
    def n_params(self) -> int:
        """Trainable parameters (torch) or stored values (trees); see the README for the tree count."""

    @abstractmethod
    def flops(self) -> float:
        """Operations one prediction costs, computed from the fitted model (not timed): deterministic, so
        it can decide selections (see the README for each family's count)."""

    @abstractmethod
    def size_bytes(self) -> int:
        """Serialized size of the fitted model (what a deployment ships), comparable across families."""

    @abstractmethod
    def memory_bytes(self) -> int:
        """Bytes of the parameters / tree arrays held in memory for inference."""

    @abstractmethod
    def save(self, stem: Path) -> Path:
        """Write the fitted model next to `stem` (extension chosen by the family); return the path."""

    @abstractmethod
    def get_params(self) -> dict: ...
