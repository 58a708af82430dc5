"""The teacher's labels for the students: out-of-fold logits on its own training rows, and logits computed
elsewhere standing in for the teacher (FixedLogits).

A teacher that fits its training rows closely (a 200-round booster) gives, on those rows, little more than the
hard labels with its own overfit mistakes: its in-sample "soft" labels carry almost nothing to transfer.
Cross-fitting (stacking's remedy) gives each training row the logits of a model that did not see it.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import StratifiedKFold

from kdx.data.base import regression_strata
from kdx.models.mlp import MLPClassifier

log = logging.getLogger("kdx")


class FixedLogits:
    """A teacher whose logits on the rows at hand were computed elsewhere (out of fold, or on raw rows): what an
    objective with `logit_signals` reads through `teacher.logits(X)`. Asked about other rows, it refuses."""

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


def fold_parts(y: np.ndarray, n_classes: int, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The out-of-fold teachers' (training rows, held-out rows) of each fold: `folds` stratified folds of the
    training rows, shuffled by `seed` (a regression stratified on its target's quantile bins)."""
    strata = regression_strata(y) if n_classes == 1 else y
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # scikit-learn's warning about classes rarer than the folds (said in the log)
        warnings.simplefilter("ignore", UserWarning)
        return list(splitter.split(np.zeros(len(y)), strata))


def out_of_fold_logits(make_teacher: Callable[[int], object], X: np.ndarray, y: np.ndarray, X_val: np.ndarray,
                       y_val: np.ndarray, n_classes: int, folds: int, seed: int) -> OutOfFold:
    """Cross-fitted logits of the training rows (X, y): `folds` stratified folds (shuffled by `seed`); fold
    model k (`make_teacher(k)`, unfitted) trains on the other folds, with the seed's validation rows for its
    early stopping as the full teacher has them, and labels fold k. A class with fewer training rows than
    folds is missing from some fold models' rows; its rows then get the logits of a model that never saw
    the class, which is what out of fold means (said in the log). A regression's folds are stratified on the
    target's quantile bins (kdx.data.base.regression_strata). MLP fold models train together in one stacked
    pass (MLPClassifier.fit_on_rows: each as it would train alone, up to float rounding), others one by one."""
    counts = np.bincount(y, minlength=n_classes) if n_classes > 1 else np.zeros(0, dtype=np.int64)
    rare = [k for k in range(len(counts)) if 0 < counts[k] < folds]
    if rare:
        log.info("out-of-fold teachers: class(es) %s have fewer training rows (%s) than the %d folds: some fold "
                 "models never see them", rare, [int(counts[k]) for k in rare], folds)
    logits = np.zeros((len(y), n_classes), dtype=np.float32)
    fold = np.full(len(y), -1, dtype=np.int64)
    seconds = 0.0
    parts = fold_parts(y, n_classes, folds, seed)
    models = [make_teacher(k) for k in range(folds)]
    if MLPClassifier.trains_together(models):  # MLP teachers: one stacked pass over the table for all folds
        log.info("out-of-fold teachers: %d folds trained together in one stacked pass", folds)
        MLPClassifier.fit_on_rows(models, X, y, [fit_rows for fit_rows, _ in parts], X_val, y_val, n_classes,
                                  names=[f"fold {k} teacher" for k in range(folds)])
    else:
        for model, (fit_rows, _) in zip(models, parts):
            model.fit_teacher(X[fit_rows], y[fit_rows], X_val, y_val, n_classes)
    for k, (model, (_, held)) in enumerate(zip(models, parts)):
        logits[held] = model.logits(X[held])
        fold[held] = k
        seconds += float(model.history_.get("fit_seconds", 0.0))
    return OutOfFold(logits, fold, seconds)
