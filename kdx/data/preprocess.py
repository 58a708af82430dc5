"""Preprocessing fitted on the training rows only and shared by the teacher and every student."""

from __future__ import annotations

import contextlib
import logging
import warnings

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from kdx.errors import DataError

MISSING = "__missing__"


def texts(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Each column as an object array of strings, missing as NaN (see `as_text`)."""
    out = {}
    for name, col in frame.items():
        if pd.api.types.infer_dtype(col, skipna=True) in ("string", "empty"):  # object or pandas' own strings
            codes, uniques = pd.factorize(col, use_na_sentinel=True)
            text = np.array([*uniques, np.nan], dtype=object)  # code −1 (missing) takes the last
            text[[i for i, t in enumerate(text[:-1]) if t == ""]] = np.nan
            out[name] = text[codes]
        else:
            out[name] = col.astype(object).map(lambda v: np.nan if pd.isna(v) or v == "" else str(v)).to_numpy(
                dtype=object)
    return out


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


class Preprocessor:
    """Median-impute and standardize numeric columns; one-hot categorical columns (missing is a level,
    unseen categories encode as all zeros). Keeps the map from encoded columns to original features."""

    def __init__(self, numeric: tuple[str, ...], categorical: tuple[str, ...]):
        self.numeric = tuple(numeric)
        self.categorical = tuple(categorical)

    def fit(self, X: pd.DataFrame) -> Preprocessor:
        transformers = []
        if self.numeric:
            transformers.append(
                # keep_empty_features: a column empty in the training rows stays (as a constant) instead of
                # being dropped, which would shift every encoded column's name by one.
                ("num", Pipeline([("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                                  ("scale", StandardScaler())]),
                 list(self.numeric))
            )
        if self.categorical:
            transformers.append(
                ("cat", Pipeline([
                    ("impute", SimpleImputer(strategy="constant", fill_value=MISSING)),
                    ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False, dtype=np.float32)),
                ]), list(self.categorical))
            )
        self._ct = ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.0)
        prepared = self._prepare(X)
        empty = [c for c in self.numeric if prepared[c].isna().all()]
        if empty:
            logging.getLogger("kdx").warning("numeric column(s) %s have no value in the training rows: they carry no "
                                             "information for any model (encoded as a constant)", empty)
        with _quiet_overflow():  # values too large to scale are caught, by name, after transform
            self._ct.fit(prepared)
        # Values such a column has in later rows were never seen in training: they are ignored (0 = the mean).
        self.empty_numeric_ = np.asarray([self.numeric.index(c) for c in empty], dtype=np.int64)
        self.feature_names_ = tuple(self.numeric + self.categorical)
        columns: list[str] = list(self.numeric)
        groups: list[int] = list(range(len(self.numeric)))
        if self.categorical:
            encoder = self._ct.named_transformers_["cat"].named_steps["onehot"]
            for j, (feature, levels) in enumerate(zip(self.categorical, encoder.categories_)):
                columns += [f"{feature}={level}" for level in levels]
                groups += [len(self.numeric) + j] * len(levels)
        self.columns_ = tuple(columns)
        self.column_feature_ = np.asarray(groups, dtype=np.int64)
        return self

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

    def _prepare(self, X: pd.DataFrame) -> pd.DataFrame:
        self._require_columns(X)
        X = X[list(self.numeric + self.categorical)]  # selecting columns copies the frame: no second copy
        if self.categorical:
            X[list(self.categorical)] = as_text(X[list(self.categorical)])
        return X

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        """The encoded rows (float32): what the fitted ColumnTransformer computes (`reference_transform`, equal
        bit for bit: tested), written straight into one matrix — the numeric columns imputed and standardized
        in float64 as scikit-learn does, one column at a time (a float64 copy of one column, never of the table),
        each category's level looked up once per distinct value."""
        self._require_columns(X)
        out = np.zeros((len(X), len(self.columns_)), dtype=np.float32)
        if self.numeric:
            steps = self._ct.named_transformers_["num"].named_steps
            median, mean, scale = (steps["impute"].statistics_, steps["scale"].mean_, steps["scale"].scale_)
            for j, name in enumerate(self.numeric):
                values = X[name].to_numpy(dtype=np.float64, na_value=np.nan)
                values = np.where(np.isnan(values), median[j], values)
                with _quiet_overflow():
                    values -= mean[j]
                    values /= scale[j]
                out[:, j] = values
        offset, rows = len(self.numeric), np.arange(len(X))
        if self.categorical:
            levels = self._ct.named_transformers_["cat"].named_steps["onehot"].categories_
            for text, categories in zip(texts(X[list(self.categorical)]).values(), levels):
                text[pd.isna(text)] = MISSING
                codes = pd.Categorical(text, categories=categories).codes  # −1: a level never seen in training
                seen = codes >= 0
                out[rows[seen], offset + codes[seen]] = 1.0
                offset += len(categories)
        out[:, getattr(self, "empty_numeric_", np.zeros(0, dtype=np.int64))] = 0.0
        return out

    def reference_transform(self, X: pd.DataFrame) -> np.ndarray:
        """scikit-learn's own transform of the fitted pipeline (the reference `transform` is tested against)."""
        with _quiet_overflow():
            out = np.ascontiguousarray(self._ct.transform(self._prepare(X)), dtype=np.float32)
        out[:, getattr(self, "empty_numeric_", np.zeros(0, dtype=np.int64))] = 0.0
        return out

    def numeric_scaler(self):
        """The fitted StandardScaler of the numeric columns (for reading thresholds in raw units)."""
        return self._ct.named_transformers_["num"].named_steps["scale"]

    @property
    def n_features_out(self) -> int:
        return len(self.columns_)

    def group_columns(self, values: np.ndarray) -> np.ndarray:
        """Sum per-column values (last axis) back to the original features, e.g. one-hot SHAP values."""
        membership = np.zeros((len(self.columns_), len(self.feature_names_)), dtype=values.dtype)
        membership[np.arange(len(self.columns_)), self.column_feature_] = 1
        return values @ membership
