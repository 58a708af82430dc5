"""The interface every teacher and student implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
from scipy.special import softmax

from kdx.config import require_float, require_int  # noqa: F401 — the models' parameter rules


class Classifier(ABC):
    """A classifier over preprocessed float32 rows whose outputs are logits (pre-softmax scores).

    `fit` receives the validation rows for early stopping / checkpoint selection and, for distillation, an
    `objective` (kdx.distill.objectives) with the teacher's per-seed `signals`: a torch student trains on its
    `student_loss`, a tree or booster student on its `soft_targets`.
    """

    family: str = ""
    input_space: str = "encoded"  # or "raw": reads the dataset's raw columns (reads_raw)

    @abstractmethod
    def fit(
        self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray, y_val: np.ndarray, n_classes: int, objective=None,
        signals=None,
    ) -> Classifier: ...

    def fit_teacher(self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray, y_val: np.ndarray,
                    n_classes: int) -> Classifier:
        """Fit on hard labels as a teacher: `fit` here. A family whose out-of-fold teachers train together
        (MLPClassifier) trains a teacher by that trainer, so that a teacher and its fold teachers are one
        computation; its students keep `fit`, the trainer their KD twins share."""
        return self.fit(X, y, X_val, y_val, n_classes)

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


def reads_raw(model) -> bool:
    """The model (or its class) reads raw rows (kdx.data.raw code matrices, carried by kdx.data.rows.Rows), not
    kdx's encoded rows: a pretrained teacher."""
    return getattr(model, "input_space", "encoded") == "raw"
