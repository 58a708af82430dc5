"""Preprocessing fitted on the training rows only and shared by the teacher and every student."""

from __future__ import annotations

import contextlib
import logging
import warnings

import numpy as np
import pandas as pd
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from kdx.data.base import distinct_values
from kdx.errors import DataError

MISSING = "__missing__"


def text_values(column: pd.Series) -> np.ndarray:
    """A column as an object array of strings, missing (and "") as NaN (see `as_text`)."""
    if pd.api.types.infer_dtype(column, skipna=True) in ("string", "empty"):  # object or pandas' own strings
        codes, text = distinct_values(column)
        text[[i for i, t in enumerate(text[:-1]) if t == ""]] = np.nan
        return text[codes]
    return column.astype(object).map(lambda v: np.nan if pd.isna(v) or v == "" else str(v)).to_numpy(dtype=object)


def texts(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Each column as an object array of strings, missing as NaN (`text_values`)."""
    return {name: text_values(col) for name, col in frame.items()}


def as_text(frame: pd.DataFrame) -> pd.DataFrame:
    # Categories must be uniformly strings for the encoder; missing stays NaN so it becomes its own level.
    # An empty string is missing too (a CSV reader's empty cell; the contract of the ONNX export's inputs).
    # A column of text (the usual case) is converted once per distinct value (pd.factorize), not per cell;
    # others cell by cell (factorize would merge 1 and 1.0, whose texts differ).
    # object columns from the start: pandas would otherwise infer its string dtype and convert twice
    return pd.DataFrame({name: pd.Series(text, index=frame.index, dtype=object)
                         for name, text in texts(frame).items()}, index=frame.index, columns=frame.columns)


@contextlib.contextmanager
def _quiet_overflow():
    with warnings.catch_warnings(), np.errstate(over="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def standardization(y: np.ndarray) -> tuple[float, float]:
    """The mean and sd (population, ddof 0) a regression target is standardized with: its training rows'."""
    y = np.asarray(y, dtype=np.float64)
    return float(y.mean()), float(y.std())


def _numbers(column: pd.Series, rows: np.ndarray | None) -> np.ndarray:
    """A numeric column's values at `rows` (all when None) as float64, missing as NaN."""
    values = column.to_numpy(dtype=np.float64, na_value=np.nan)
    return values if rows is None else values[rows]


def _levels(column: pd.Series, rows: np.ndarray | None) -> np.ndarray:
    """A categorical column's values at `rows` as the text the encoder reads, missing as the level MISSING."""
    text = text_values(column if rows is None else column.iloc[rows])
    text[pd.isna(text)] = MISSING
    return text


class Preprocessor:
    """Median-impute and standardize numeric columns; one-hot categorical columns (missing is a level,
    unseen categories encode as all zeros). Keeps the map from encoded columns to original features.

    Each column is fitted on its own (the median of its values, scikit-learn's StandardScaler and OneHotEncoder:
    what a ColumnTransformer of SimpleImputer, StandardScaler and OneHotEncoder holds, tested against one) and
    encoded straight into one float32 matrix, one column at a time: `fit` and `transform` take the rows to use
    as positions into the frame, so neither copies the table (a 10M-row table is encoded without a second copy).
    Fitted: `median_`, `mean_`, `scale_` (float64, one per numeric column), `categories_` (the sorted levels
    of each categorical column), `columns_` (the encoded columns' names), `column_feature_`."""

    def __init__(self, numeric: tuple[str, ...], categorical: tuple[str, ...]):
        self.numeric = tuple(numeric)
        self.categorical = tuple(categorical)

    def fit(self, X: pd.DataFrame, rows: np.ndarray | None = None) -> Preprocessor:
        """Fit on the frame's rows at positions `rows` (all when None)."""
        self._require_columns(X)
        median, mean, scale, empty = [], [], [], []
        for j, name in enumerate(self.numeric):
            values = _numbers(X[name], rows)
            missing = np.isnan(values)
            # SimpleImputer(strategy="median", keep_empty_features=True)'s statistic (tested against it), by
            # selection rather than its full sort: a column empty in the training rows stays, as a constant 0,
            # instead of being dropped, which would shift every encoded column's name by one.
            if missing.all():
                empty.append(j)
                median.append(0.0)
            else:
                median.append(float(np.median(values[~missing])))
            with _quiet_overflow():  # values too large to scale are caught, by name, after transform
                scaler = StandardScaler().fit(np.where(missing, median[-1], values)[:, None])
            mean.append(scaler.mean_[0])
            scale.append(scaler.scale_[0])
        if empty:
            logging.getLogger("kdx").warning("numeric column(s) %s have no value in the training rows: they carry no "
                                             "information for any model (encoded as a constant)",
                                             [self.numeric[j] for j in empty])
        self.median_, self.mean_, self.scale_ = (np.asarray(v, dtype=np.float64) for v in (median, mean, scale))
        # Values such a column has in later rows were never seen in training: they are ignored (0 = the mean).
        self.empty_numeric_ = np.asarray(empty, dtype=np.int64)
        self.categories_ = [OneHotEncoder(handle_unknown="ignore").fit(_levels(X[name], rows)[:, None]).categories_[0]
                            for name in self.categorical]
        self.feature_names_ = tuple(self.numeric + self.categorical)
        columns: list[str] = list(self.numeric)
        groups: list[int] = list(range(len(self.numeric)))
        for j, (feature, levels) in enumerate(zip(self.categorical, self.categories_)):
            columns += [f"{feature}={level}" for level in levels]
            groups += [len(self.numeric) + j] * len(levels)
        self.columns_ = tuple(columns)
        self.column_feature_ = np.asarray(groups, dtype=np.int64)
        return self

    def __setstate__(self, state: dict) -> None:
        # A preprocessor saved by an earlier kdx (a run's preprocessor.joblib) held a fitted ColumnTransformer:
        # its statistics are read into the attributes this one fits.
        ct = state.pop("_ct", None)
        self.__dict__.update(state)
        if "empty_numeric_" not in state:  # older still: no column was ever encoded as an empty constant
            self.empty_numeric_ = np.zeros(0, dtype=np.int64)
        if ct is not None and not hasattr(self, "mean_"):
            self.median_ = self.mean_ = self.scale_ = np.zeros(0)
            if self.numeric:
                steps = ct.named_transformers_["num"].named_steps
                self.median_ = np.asarray(steps["impute"].statistics_, dtype=np.float64)
                self.mean_ = np.asarray(steps["scale"].mean_, dtype=np.float64)
                self.scale_ = np.asarray(steps["scale"].scale_, dtype=np.float64)
            self.categories_ = (list(ct.named_transformers_["cat"].named_steps["onehot"].categories_)
                                if self.categorical else [])

    def fit_target(self, y: np.ndarray) -> Preprocessor:
        """A regression target's standardization, from the training rows: mean and sd (population, ddof 0)."""
        self.target_mean_, self.target_scale_ = standardization(y)
        if not self.target_scale_ > 0:
            raise DataError("the regression target is constant in the training rows: there is nothing to predict")
        return self

    @property
    def regression(self) -> bool:
        """Whether the target is a number (standardized by `fit_target`) rather than a class."""
        return getattr(self, "target_scale_", None) is not None

    def scale_target(self, y: np.ndarray) -> np.ndarray:
        """Target values in the units models fit and predict: (y − mean) / sd, float32."""
        return ((np.asarray(y, dtype=np.float64) - self.target_mean_) / self.target_scale_).astype(np.float32)

    def unscale_target(self, z: np.ndarray) -> np.ndarray:
        """Predictions in standardized units back in the target's own: z·sd + mean, float64 (a (rows, 1) output
        becomes (rows,))."""
        z = np.asarray(z, dtype=np.float64)
        z = z[:, 0] if z.ndim == 2 else z
        return z * self.target_scale_ + self.target_mean_

    def _require_columns(self, X: pd.DataFrame) -> None:
        missing = [c for c in self.numeric + self.categorical if c not in X.columns]
        if missing:
            raise DataError(f"input rows lack feature column(s) {missing}")

    def transform(self, X: pd.DataFrame, rows: np.ndarray | None = None) -> np.ndarray:
        """The encoded rows (float32) of the frame's rows at positions `rows` (all when None), written straight
        into one matrix: the numeric columns imputed and standardized in float64 as scikit-learn does, one
        column at a time (a float64 copy of one column, never of the table), each category's level looked up
        once per distinct value."""
        self._require_columns(X)
        n = len(X) if rows is None else len(rows)
        out = np.zeros((n, len(self.columns_)), dtype=np.float32)
        for j, name in enumerate(self.numeric):
            values = _numbers(X[name], rows)
            values = np.where(np.isnan(values), self.median_[j], values)
            with _quiet_overflow():
                values -= self.mean_[j]
                values /= self.scale_[j]
            out[:, j] = values
        offset, positions = len(self.numeric), np.arange(n)
        for name, categories in zip(self.categorical, self.categories_):
            codes = pd.Categorical(_levels(X[name], rows), categories=categories).codes  # −1: never seen in training
            seen = codes >= 0
            out[positions[seen], offset + codes[seen]] = 1.0
            offset += len(categories)
        out[:, self.empty_numeric_] = 0.0
        return out

    @property
    def n_features_out(self) -> int:
        return len(self.columns_)

    def group_columns(self, values: np.ndarray) -> np.ndarray:
        """Sum per-column values (last axis) back to the original features, e.g. one-hot SHAP values."""
        membership = np.zeros((len(self.columns_), len(self.feature_names_)), dtype=values.dtype)
        membership[np.arange(len(self.columns_)), self.column_feature_] = 1
        return values @ membership
