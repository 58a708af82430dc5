"""The raw-row contract of an exported model: one input per original feature, and how rows become inputs.

Pure NumPy/pandas (no ONNX): the same feeding rule is written out in the model card for deployments that
never import kdx.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from kdx.data.preprocess import MISSING, Preprocessor
from kdx.errors import DataError


@dataclass(frozen=True)
class NumericFeature:
    name: str
    median: float  # the training median that replaces a missing value
    mean: float
    scale: float
    empty: bool  # no value in the training rows: the model ignores it


@dataclass(frozen=True)
class CategoricalFeature:
    name: str
    categories: tuple[str, ...]  # the one-hot levels in order; "__missing__" is the missing level when seen


@dataclass(frozen=True)
class Schema:
    numeric: tuple[NumericFeature, ...]
    categorical: tuple[CategoricalFeature, ...]

    @classmethod
    def of(cls, pre: Preprocessor) -> Schema:
        empty = set(pre.empty_numeric_.tolist())
        numeric = tuple(NumericFeature(name, float(pre.median_[j]), float(pre.mean_[j]), float(pre.scale_[j]),
                                       j in empty) for j, name in enumerate(pre.numeric))
        categorical = tuple(CategoricalFeature(name, tuple(str(c) for c in levels))
                            for name, levels in zip(pre.categorical, pre.categories_))
        return cls(numeric, categorical)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.numeric) + tuple(f.name for f in self.categorical)

    def to_dict(self) -> dict:
        return {"numeric": [asdict(f) for f in self.numeric],
                "categorical": [{**asdict(f), "categories": list(f.categories)} for f in self.categorical],
                "missing_category": MISSING}


def raw_feed(rows: pd.DataFrame, schema: Schema) -> dict[str, np.ndarray]:
    """ONNX inputs for raw rows: per numeric feature a float64 column (missing → NaN), per categorical
    feature a string column (missing → "", any other value → str(value), as kdx's preprocessing reads it)."""
    absent = [name for name in schema.names if name not in rows.columns]
    if absent:
        raise DataError(f"rows lack feature column(s) {absent}; the model takes {list(schema.names)}")
    feed = {}
    for f in schema.numeric:
        values = pd.to_numeric(rows[f.name], errors="coerce")
        feed[f.name] = values.to_numpy(dtype=np.float64, na_value=np.nan).reshape(-1, 1)
    for f in schema.categorical:
        text = [("" if pd.isna(v) else str(v)) for v in rows[f.name]]
        feed[f.name] = np.asarray(text, dtype=object).reshape(-1, 1)
    return feed
