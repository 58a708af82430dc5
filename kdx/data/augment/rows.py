"""A file of unlabelled rows the user has (production traffic, a later month) for the teacher to label."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from kdx.config import require_int
from kdx.data.augment.base import Augmenter, Columns
from kdx.data.loaders import read_table
from kdx.errors import DataError

log = logging.getLogger("kdx")

_READ: dict[tuple, pd.DataFrame] = {}  # the last file read, by path, size, mtime and reading options


class FileRows(Augmenter):
    """The rows of `path` (CSV, compressed CSV or Parquet, as `dataset=csv` reads them), checked against the
    dataset's feature columns: every feature column must be there, numeric ones must hold numbers; other columns
    (a label column, ids) are ignored and named in the log, since the teacher gives these rows their labels.
    Each seed takes a random sample of at most `max_rows` of them; `size_factor` does not apply (the file sets the
    count)."""

    name = "rows"

    def __init__(self, path: str | None = None, max_rows: int = 100_000, sep: str | None = None,
                 encoding: str = "utf-8-sig", **_ignored):
        if not path:
            raise DataError("augment=rows needs augment.path=FILE (a table with the dataset's feature columns)")
        self.path = Path(str(path)).expanduser()
        if not self.path.is_file():
            raise DataError(f"augment.path: file not found: {self.path} (relative to the directory kdx was started in)")
        self.max_rows = require_int("augment.max_rows", max_rows)
        self.size_factor = 0.0
        self.sep, self.encoding = sep, encoding
        self._said = False  # the ignored columns are named once

    def settings(self) -> dict:
        stat = self.path.stat()
        return {"name": self.name, "path": str(self.path.resolve()), "bytes": stat.st_size,
                "mtime_ns": stat.st_mtime_ns, "max_rows": self.max_rows}

    def _read(self) -> pd.DataFrame:
        """The file, read once per process (the check at the run's door and each seed's rows share it)."""
        stat = self.path.stat()
        key = (str(self.path.resolve()), stat.st_size, stat.st_mtime_ns, self.sep, self.encoding)
        if key not in _READ:
            table = read_table(self.path, self.sep, self.encoding)
            table.columns = [str(c) for c in table.columns]
            if table.empty:
                raise DataError(f"augment.path {self.path.name} has a header but no rows")
            _READ.clear()
            _READ[key] = table
        return _READ[key]

    def check(self, data) -> None:
        self._rows(list(data.X.columns), Columns(tuple(data.numeric), tuple(data.categorical)))

    def generate(self, train: pd.DataFrame, encoded: np.ndarray, columns: Columns,
                 rng: np.random.Generator) -> pd.DataFrame:
        frame = self._rows(list(train.columns), columns)
        if len(frame) > self.max_rows:
            frame = frame.iloc[np.sort(rng.choice(len(frame), self.max_rows, replace=False))]
        return frame.reset_index(drop=True)

    def _rows(self, features: list[str], columns: Columns) -> pd.DataFrame:
        """The file's rows as the dataset's feature columns, checked (one DataError line for what is wrong)."""
        table = self._read()
        missing = [c for c in features if c not in table.columns]
        if missing:
            raise DataError(f"augment.path {self.path.name} lacks the dataset's feature column(s) {missing}; it has "
                            f"{list(table.columns)}")
        extra = [c for c in table.columns if c not in features]
        if extra and not self._said:
            self._said = True
            log.info("augment.path %s: column(s) %s are not features of the dataset: ignored (the teacher labels "
                     "the rows)", self.path.name, extra)
        frame = table[features].copy()
        for c in columns.numeric:
            if not pd.api.types.is_numeric_dtype(frame[c]):
                parsed = pd.to_numeric(frame[c], errors="coerce")
                bad = frame[c][parsed.isna() & frame[c].notna()]
                if len(bad):
                    raise DataError(f"augment.path {self.path.name}: column '{c}' is numeric in the dataset but holds "
                                    f"text (e.g. {bad.iloc[0]!r}); fix the file or drop those rows")
                frame[c] = parsed
            if np.isinf(frame[c].to_numpy(dtype=float)).any():
                raise DataError(f"augment.path {self.path.name}: numeric column '{c}' contains infinite values")
        for c in columns.categorical:
            frame[c] = frame[c].astype(object)
        return frame
