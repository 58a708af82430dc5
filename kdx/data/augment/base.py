"""The interface every augmenter implements, and the seed's generated rows built from it.

An augmenter makes unlabelled rows for the teacher to label (Bucilă et al. 2006, "Model Compression"; Fakoor
et al. 2020, FAST-DAD): from the seed's **training rows only** (never validation or test rows), in the raw
columns of the dataset, deterministically from the seed. `generate_rows` then drops rows equal to a row of the
dataset or to one generated before (they carry nothing new) and encodes the rest with the seed's preprocessing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from kdx.config import require_float, require_int
from kdx.data.base import TabularData
from kdx.data.preprocess import Preprocessor, as_text

log = logging.getLogger("kdx")


@dataclass(frozen=True)
class Columns:
    """What an augmenter knows of the table: its numeric and categorical feature columns, and which numeric
    columns hold whole numbers only in the training rows (their generated values are rounded, so that a
    generated row stays in the feature's domain: an age of 37.4 is not a row any model was meant to see)."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    integer: tuple[str, ...] = ()


class Augmenter:
    """Makes `count(n)` unlabelled rows from `n` training rows. Subclasses set `name` and implement
    `generate`; `settings()` is everything that determines the rows (cache keys, summaries)."""

    name = "augmenter"
    active = True

    def __init__(self, size_factor: float = 5.0, max_rows: int = 100_000):
        self.size_factor = require_float("augment.size_factor", size_factor, 0.0, low_open=True)
        self.max_rows = require_int("augment.max_rows", max_rows)

    def settings(self) -> dict:
        return {"name": self.name, "size_factor": self.size_factor, "max_rows": self.max_rows}

    def count(self, n_train: int) -> int:
        """Rows to generate for `n_train` training rows: size_factor × n_train, at most max_rows."""
        return int(min(self.max_rows, round(self.size_factor * n_train)))

    def generate(self, train: pd.DataFrame, encoded: np.ndarray, columns: Columns,
                 rng: np.random.Generator) -> pd.DataFrame:
        """Raw rows (the columns of `train`) made from the training rows `train` (raw) / `encoded` (the seed's
        preprocessing of them: standardized numeric, one-hot categorical)."""
        raise NotImplementedError

    def check(self, data: TabularData) -> None:
        """Refuse, in one line and before any training, what cannot work with this dataset (e.g. a file of rows
        without its columns)."""


class NoAugment(Augmenter):
    """The study's protocol: students see the training rows only."""

    name = "none"
    active = False

    def __init__(self, **_ignored):  # size_factor/max_rows of another augmenter's config mean nothing here
        self.size_factor, self.max_rows = 0.0, 0

    def settings(self) -> dict:
        return {"name": self.name}


@dataclass
class GeneratedRows:
    """A seed's generated rows: raw (`frame`, the dataset's columns) and encoded (`X`, the seed's
    preprocessing), with how many were asked for and how many were dropped as copies of existing rows."""

    frame: pd.DataFrame
    X: np.ndarray
    requested: int
    duplicates: int

    def __len__(self) -> int:
        return len(self.frame)

    def record(self) -> dict:
        return {"rows": len(self), "requested": self.requested, "duplicates_dropped": self.duplicates}


def table_columns(data: TabularData, train: pd.DataFrame) -> Columns:
    integer = tuple(c for c in data.numeric if _whole(train[c]))
    return Columns(tuple(data.numeric), tuple(data.categorical), integer)


def _whole(column: pd.Series) -> bool:
    values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float)
    values = values[np.isfinite(values)]
    return len(values) > 0 and bool(np.all(values == np.round(values)))


def row_hashes(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """One 64-bit hash per row of `columns`, equal for rows with equal values (numbers compared as floats,
    categories as text, missing as missing)."""
    if frame.empty:
        return np.zeros(0, dtype=np.uint64)
    numeric = [c for c in columns if pd.api.types.is_numeric_dtype(frame[c])]
    text = as_text(frame[[c for c in columns if c not in numeric]])  # as the preprocessing reads categories
    canonical = pd.concat([frame[numeric].astype(float), text], axis=1)[columns]
    return pd.util.hash_pandas_object(canonical, index=False).to_numpy()


_HASHES: dict[int, tuple[pd.DataFrame, np.ndarray]] = {}  # the last dataset's row hashes (the same every seed)


def _dataset_hashes(data: TabularData, columns: list[str]) -> np.ndarray:
    cached = _HASHES.get(id(data.X))
    if cached is None or cached[0] is not data.X:
        _HASHES.clear()
        cached = _HASHES[id(data.X)] = (data.X, row_hashes(data.X, columns))
    return cached[1]


def generate_rows(augmenter: Augmenter, data: TabularData, train_rows: np.ndarray, encoded_train: np.ndarray,
                  preprocessor: Preprocessor, seed: int) -> GeneratedRows:
    """The seed's generated rows: `augmenter` applied to the training rows `train_rows` (indices into
    `data.X`) only, then rows equal to any row of the dataset (training, validation or test) or to an earlier
    generated row dropped, and the rest encoded with the seed's `preprocessor`. The same seed gives the same
    rows."""
    train = data.X.iloc[train_rows].reset_index(drop=True)
    columns = list(data.X.columns)
    if not augmenter.active:
        return GeneratedRows(train.iloc[:0], encoded_train[:0], 0, 0)
    rng = np.random.default_rng([seed, 0x4B4458])  # its own stream: the rows do not depend on other draws
    frame = augmenter.generate(train, encoded_train, table_columns(data, train), rng)
    frame = frame[columns].reset_index(drop=True)
    requested = len(frame)
    hashes = row_hashes(frame, columns)
    _, first = np.unique(hashes, return_index=True)  # the first of each group of equal rows
    keep = np.zeros(len(frame), dtype=bool)
    keep[first] = True
    keep &= ~np.isin(hashes, _dataset_hashes(data, columns))
    frame = frame[keep].reset_index(drop=True)
    for c in data.categorical:  # the dataset's own representation of categories (object columns)
        frame[c] = frame[c].astype(object)
    X = preprocessor.transform(frame) if len(frame) else encoded_train[:0]
    bad = ~np.isfinite(X).all(axis=1) if len(X) else np.zeros(0, dtype=bool)
    if bad.any():  # noise cannot make a finite value infinite at these scales, but a user's file can hold one
        frame, X = frame[~bad].reset_index(drop=True), X[~bad]
    dropped = requested - len(frame)
    if dropped:
        log.info("augment=%s: %d of %d generated rows dropped (copies of dataset rows or of each other)",
                 augmenter.name, dropped, requested)
    return GeneratedRows(frame, np.ascontiguousarray(X, dtype=np.float32), requested, dropped)
