"""The one shape every loader returns, and the checks every dataset must pass."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from kdx.errors import DataError


@dataclass(frozen=True)
class TabularData:
    """Raw features, integer-coded labels and what is known about the columns.

    `X` keeps the original (unencoded) columns; `y[i]` indexes `class_names`. `label_values`: the integer each
    class has in the source when the source codes its labels as integers and names them apart (scikit-learn's
    Breast Cancer: 0 = malignant); None when the class names are the labels as written.
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

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

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
        counts = np.bincount(self.y, minlength=self.n_classes)
        return {c: int(n) for c, n in zip(self.class_names, counts)}


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
