"""The one shape every loader returns, and the checks every dataset must pass."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from kdx.errors import DataError


@dataclass(frozen=True)
class TabularData:
    """Raw features, the target and what is known about the columns.

    `X` keeps the original (unencoded) columns. `task`: "classification" — `y[i]` (int64) indexes
    `class_names` — or "regression" — `y` is the target's values (float64) and `class_names` is the one output,
    the target's name, so that `n_classes` (the models' outputs) is 1. `label_values`: the integer each class has
    in the source when the source codes its labels as integers and names them apart (scikit-learn's Breast
    Cancer: 0 = malignant); None when the class names are the labels as written.
    """

    name: str
    X: pd.DataFrame
    y: np.ndarray
    class_names: tuple[str, ...]
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    source: str = ""
    notes: dict = field(default_factory=dict)
    label_values: tuple[int, ...] | None = None
    task: str = "classification"

    @property
    def n_classes(self) -> int:
        """The classes, or 1 (one output) for a regression."""
        return len(self.class_names)

    @property
    def regression(self) -> bool:
        return self.task == "regression"

    def strata(self) -> np.ndarray:
        """What splits and samples stratify on: the class, or the target's quantile bin (regression_strata)."""
        return regression_strata(self.y) if self.regression else self.y

    @property
    def features(self) -> tuple[str, ...]:
        return tuple(self.X.columns)

    def integer_labels(self) -> tuple[int, ...] | None:
        """The labels as the integers they are in the source (in `class_names` order), or None where some label
        is not a whole number ("yes", "2.5")."""
        if self.label_values is not None:
            return tuple(int(v) for v in self.label_values)
        values = []
        for name in self.class_names:
            try:
                number = float(name)
            except ValueError:
                return None
            if not number.is_integer():
                return None
            values.append(int(number))
        return tuple(values)

    def class_counts(self) -> dict[str, int]:
        if self.regression:
            return {}
        counts = np.bincount(self.y, minlength=self.n_classes)
        return {c: int(n) for c, n in zip(self.class_names, counts)}


def distinct_values(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(codes, table): the column is `table[codes]`, an object array holding one Python object per distinct
    value; missing cells have code −1, which takes the table's last entry, NaN."""
    codes, uniques = pd.factorize(column, use_na_sentinel=True)
    return codes, np.array([*uniques, np.nan], dtype=object)


def encode_labels(raw: pd.Series, dataset: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Map a label column to 0..C-1 codes in sorted order of its values; reject NaN and single-class targets."""
    if raw.isna().any():
        raise DataError(
            f"{dataset}: target column '{raw.name}' has {int(raw.isna().sum())} missing value(s); "
            "drop those rows or fill them before running"
        )
    values = raw.to_numpy()
    classes = np.unique(values)
    if len(classes) < 2:
        raise DataError(
            f"{dataset}: target column '{raw.name}' has a single class ({classes[0]!r}); "
            "a classifier needs at least two"
        )
    codes = np.searchsorted(classes, values).astype(np.int64)
    return codes, tuple(str(c) for c in classes)


STRATA = 10  # quantile bins of a regression target that splits stratify on
STRATUM_ROWS = 30  # ... at least this many rows per bin (fewer bins on a small table)


def regression_strata(y: np.ndarray) -> np.ndarray:
    """Each row's quantile bin of a numeric target (0..b−1, b ≤ STRATA bins of about equal counts, each at least
    STRATUM_ROWS rows): stratifying on them gives every split part rows from the whole range of the target.
    Tied values share a bin (a target of few distinct values gets fewer bins)."""
    y = np.asarray(y, dtype=np.float64)
    bins = max(1, min(STRATA, len(y) // STRATUM_ROWS))
    edges = np.quantile(y, np.linspace(0, 1, bins + 1)[1:-1])
    codes = np.searchsorted(edges, y, side="right")
    return np.unique(codes, return_inverse=True)[1].astype(np.int64)


def regression_target(raw: pd.Series, dataset: str) -> np.ndarray:
    """A target to predict as a number (float64): refuse text, missing, infinite and constant targets."""
    name = raw.name
    if not pd.api.types.is_numeric_dtype(raw) or pd.api.types.is_bool_dtype(raw):
        parsed = pd.to_numeric(raw, errors="coerce")
        bad = raw[parsed.isna() & raw.notna()]
        if len(bad):
            raise DataError(f"{dataset}: dataset.task=regression needs a numeric target, but '{name}' holds text "
                            f"(e.g. {bad.iloc[0]!r}); predict it as classes with dataset.task=classification")
        raw = parsed
    values = raw.to_numpy(dtype=np.float64, na_value=np.nan)
    if np.isnan(values).any():
        raise DataError(f"{dataset}: target column '{name}' has {int(np.isnan(values).sum())} missing value(s); "
                        "drop those rows or fill them before running")
    if np.isinf(values).any():
        raise DataError(f"{dataset}: target column '{name}' has {int(np.isinf(values).sum())} infinite value(s); "
                        "drop or replace them before running")
    if np.ptp(values) == 0:
        raise DataError(f"{dataset}: target column '{name}' holds one value ({values[0]:g}) in every row: "
                        "nothing to predict")
    return values


TASKS = ("auto", "classification", "regression")


def check_task(task: str, dataset: str, allowed: tuple[str, ...] = TASKS) -> str:
    """`dataset.task` in one line when it is unknown or not one this dataset has."""
    if task not in TASKS:
        raise DataError(f"dataset.task must be one of {', '.join(TASKS)}, got {task!r}")
    if task not in allowed:
        raise DataError(f"{dataset}: dataset.task={task} does not apply: its target is "
                        f"{'a class' if 'classification' in allowed else 'a number'} "
                        f"(dataset.task={[t for t in allowed if t != 'auto'][0]})")
    return task


def check_features(X: pd.DataFrame, numeric: tuple[str, ...], categorical: tuple[str, ...], dataset: str) -> None:
    """Every listed column exists, none is entirely empty, numeric columns hold numbers."""
    if len(X) == 0:
        raise DataError(f"{dataset}: the table has no rows")
    if not numeric and not categorical:
        raise DataError(f"{dataset}: no feature columns remain besides the target")
    missing = [c for c in (*numeric, *categorical) if c not in X.columns]
    if missing:
        raise DataError(f"{dataset}: feature column(s) {missing} not found; available: {list(X.columns)}")
    empty = [c for c in X.columns if X[c].isna().all()]
    if empty:
        raise DataError(
            f"{dataset}: feature column(s) {empty} are entirely empty; drop them (dataset.drop=[...]) and rerun"
        )
    for c in numeric:
        if not pd.api.types.is_numeric_dtype(X[c]):
            raise DataError(
                f"{dataset}: column '{c}' is listed as numeric but holds text (e.g. {X[c].dropna().iloc[0]!r}); "
                "list it under dataset.categorical"
            )
        if np.isinf(X[c].to_numpy(dtype=float)).any():
            raise DataError(f"{dataset}: numeric column '{c}' contains infinite values; replace them and rerun")
