"""Raw rows as numbers, for models that read the dataset's original columns (a pretrained teacher).

A row is one float64 per original feature: numeric values as they are (NaN = missing) and each categorical
value as its index in the dataset's sorted vocabulary (NaN = missing; "" is missing, as in kdx's
preprocessing). This is lossless, so rows can be mixed feature by feature (the Shapley game whose players
are the original features) with plain NumPy, and turned back into a DataFrame only for the model call.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from kdx.data.preprocess import MISSING


def _text(column: pd.Series) -> pd.Series:
    return column.map(lambda v: np.nan if pd.isna(v) or v == "" else str(v))


@dataclass(frozen=True)
class RawCodec:
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    vocab: dict[str, tuple[str, ...]]  # categorical feature → its values, sorted

    @property
    def features(self) -> tuple[str, ...]:
        """The column order of a code matrix: numeric features, then categorical (as kdx's preprocessing)."""
        return self.numeric + self.categorical

    @classmethod
    def of(cls, X: pd.DataFrame, numeric: tuple[str, ...], categorical: tuple[str, ...]) -> RawCodec:
        """The vocabulary of every categorical column over all rows (a representation, not a fitted transform)."""
        vocab = {c: tuple(sorted(_text(X[c]).dropna().unique())) for c in categorical}
        return cls(tuple(numeric), tuple(categorical), vocab)

    def encode(self, X: pd.DataFrame) -> np.ndarray:
        """Code matrix (rows, features) of a frame with the dataset's columns."""
        out = np.empty((len(X), len(self.features)), dtype=np.float64)
        for j, c in enumerate(self.numeric):
            out[:, j] = pd.to_numeric(X[c], errors="coerce").to_numpy(np.float64)
        for j, c in enumerate(self.categorical, start=len(self.numeric)):
            index = {v: i for i, v in enumerate(self.vocab[c])}
            # A value outside the vocabulary (rows the codec was not built on) is unknown: missing.
            out[:, j] = _text(X[c]).map(lambda v, index=index: index.get(v, np.nan)).to_numpy(np.float64)
        return out

    def frame(self, codes: np.ndarray, categories_as: str = "object") -> pd.DataFrame:
        """The rows back as a DataFrame: numeric float64; categorical as strings with NaN for missing
        (`object`) or as pandas categoricals over the vocabulary (`category`)."""
        columns = {c: codes[:, j] for j, c in enumerate(self.numeric)}
        for j, c in enumerate(self.categorical, start=len(self.numeric)):
            code = np.where(np.isnan(codes[:, j]), -1, codes[:, j]).astype(np.int64)
            values = pd.Categorical.from_codes(code, categories=list(self.vocab[c]))
            columns[c] = values if categories_as == "category" else np.asarray(values.astype(object))
        return pd.DataFrame(columns)

    def perturb(self, clean: np.ndarray, clean_encoded: np.ndarray, noisy_encoded: np.ndarray, preprocessor,
                changed: np.ndarray) -> np.ndarray:
        """Raw code rows of perturbed copies of data rows: the clean raw row, with each numeric feature moved
        by the perturbation's shift in raw units (a missing value stays missing) and each categorical feature
        the perturbation `changed` read from the perturbed one-hot block. Shifting the exact raw value, not
        decoding the float32 encoded one, keeps every other value exact (a booster's split can sit on it)."""
        out = clean.astype(np.float64, copy=True)
        n_num = len(self.numeric)
        if n_num:
            shift = noisy_encoded[:, :n_num].astype(np.float64) - clean_encoded[:, :n_num].astype(np.float64)
            out[:, :n_num] += shift * preprocessor.scale_
        decoded = self.decode(noisy_encoded, preprocessor)
        out[:, n_num:] = np.where(changed[:, n_num:], decoded[:, n_num:], out[:, n_num:])
        return out

    def decode(self, encoded: np.ndarray, preprocessor) -> np.ndarray:
        """Code matrix of rows given in kdx's encoded space (e.g. perturbed copies of data rows): numeric
        columns un-standardized, each one-hot block read as its level. Imputation cannot be undone: a value
        that was missing decodes as the median; an all-zero block (unseen category) decodes as missing."""
        out = np.full((len(encoded), len(self.features)), np.nan)
        n_num = len(self.numeric)
        if n_num:
            out[:, :n_num] = encoded[:, :n_num].astype(np.float64) * preprocessor.scale_ + preprocessor.mean_
        columns = preprocessor.columns_
        for j, c in enumerate(self.categorical, start=n_num):
            block = np.flatnonzero(preprocessor.column_feature_ == j)
            if not len(block):
                continue
            levels = [columns[k][len(c) + 1:] for k in block]  # "feature=level"
            index = {v: i for i, v in enumerate(self.vocab[c])}
            level_code = np.array([np.nan if v == MISSING else index.get(v, np.nan) for v in levels])
            values = encoded[:, block]
            pick = values.argmax(1)
            out[:, j] = np.where(values.max(1) > 0.5, level_code[pick], np.nan)
        return out
