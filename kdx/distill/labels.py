"""The teacher's labels for the students: out-of-fold logits on its own training rows, and logits computed
elsewhere standing in for the teacher (FixedLogits).

A teacher that fits its training rows closely (a 200-round booster) gives, on those rows, little more than the
hard labels with its own overfit mistakes: its in-sample "soft" labels carry almost nothing to transfer.
Cross-fitting (stacking's remedy) gives each training row the logits of a model that did not see it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import StratifiedKFold

from kdx.errors import ConfigError


class FixedLogits:
    """A teacher whose logits on the rows at hand were computed elsewhere (out of fold, or on raw rows): what an
    objective with `logit_signals` reads through `teacher.logits(X)`. Asked about other rows, it refuses."""

    family = "fixed"

    def __init__(self, logits: np.ndarray):
        self.values = np.asarray(logits)

    def logits(self, X: np.ndarray) -> np.ndarray:
        if len(X) != len(self.values):
            raise ValueError(f"FixedLogits holds the logits of {len(self.values)} rows, asked about {len(X)}")
        return self.values


@dataclass
class OutOfFold:
    """Out-of-fold logits of the training rows: `logits[i]` comes from fold model `fold[i]`, which was trained
    on the rows of the other folds only. `fit_seconds`: the fold models' training time, summed."""

    logits: np.ndarray
    fold: np.ndarray
    fit_seconds: float


def out_of_fold_logits(make_teacher: Callable[[int], object], X: np.ndarray, y: np.ndarray, X_val: np.ndarray,
                       y_val: np.ndarray, n_classes: int, folds: int, seed: int) -> OutOfFold:
    """Cross-fitted logits of the training rows (X, y): `folds` stratified folds (shuffled by `seed`); fold
    model k (`make_teacher(k)`, unfitted) trains on the other folds, with the seed's validation rows for its
    early stopping as the full teacher has them, and labels fold k."""
    counts = np.bincount(y, minlength=n_classes)
    present = counts[counts > 0]
    if present.min() < folds:
        raise ConfigError(f"kd.oof_folds={folds}: the smallest class has {int(present.min())} training rows, fewer "
                          "than the folds; lower kd.oof_folds or use kd.soft_labels=insample")
    logits = np.zeros((len(y), n_classes), dtype=np.float32)
    fold = np.full(len(y), -1, dtype=np.int64)
    seconds = 0.0
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for k, (fit_rows, held) in enumerate(splitter.split(np.zeros(len(y)), y)):
        model = make_teacher(k).fit(X[fit_rows], y[fit_rows], X_val, y_val, n_classes)
        logits[held] = model.logits(X[held])
        fold[held] = k
        seconds += float(model.history_.get("fit_seconds", 0.0))
    return OutOfFold(logits, fold, seconds)
