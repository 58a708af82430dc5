"""Loaders for the bundled study datasets and for user CSV files."""

from __future__ import annotations

import gzip
import hashlib
import io
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from kdx.datasets.base import TabularData, check_features, encode_labels
from kdx.errors import DataError

ADULT_NUMERIC = ("age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week")
ADULT_CATEGORICAL = (
    "workclass", "education", "marital-status", "occupation", "relationship", "race", "sex", "native-country",
)
ADULT_COLUMNS = (
    "age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation",
    "relationship", "race", "sex", "capital-gain", "capital-loss", "hours-per-week", "native-country", "income",
)
ADULT_SOURCE = "UCI Adult (Becker & Kohavi 1996), doi:10.24432/C5XW20, CC BY 4.0"
WINE_SOURCE = "UCI Wine Quality (Cortez et al. 2009), doi:10.24432/C56S3T, CC BY 4.0"


def _expected_checksums() -> dict[str, str]:
    text = resources.files("kdx.datasets").joinpath("bundled", "SHA256SUMS").read_text()
    return {name: digest for digest, name in (line.split() for line in text.splitlines() if line.strip())}


def read_bundled(name: str, bundle_dir: Path | None = None) -> bytes:
    """Return the raw bytes of a bundled file after checking them against the published SHA-256."""
    root = Path(bundle_dir) if bundle_dir else resources.files("kdx.datasets").joinpath("bundled")
    path = root / f"{name}.gz"
    try:
        raw = gzip.decompress(path.read_bytes())
    except FileNotFoundError:
        raise DataError(f"bundled file {name}.gz is missing from the kdx install; reinstall kdx") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"bundled file {name}.gz is corrupt ({exc}); reinstall kdx") from None
    expected = _expected_checksums().get(name)
    actual = hashlib.sha256(raw).hexdigest()
    if expected is None or actual != expected:
        raise DataError(
            f"bundled file {name} failed its SHA-256 check (expected {expected}, got {actual}); reinstall kdx"
        )
    return raw


def load_adult(bundle_dir: Path | None = None) -> TabularData:
    """UCI Adult: adult.data + adult.test (48,842 rows, 14 features); ' ?' is missing."""
    frames = []
    for name, skip in (("adult.data", 0), ("adult.test", 1)):
        text = read_bundled(name, bundle_dir).decode("utf-8")
        frames.append(
            pd.read_csv(
                io.StringIO(text), header=None, names=list(ADULT_COLUMNS), skiprows=skip,
                skipinitialspace=True, na_values=["?"], skip_blank_lines=True,
            )
        )
    df = pd.concat(frames, ignore_index=True)
    # adult.test writes labels with a trailing '.', adult.data without.
    target = df.pop("income").str.rstrip(".")
    y, classes = encode_labels(target, "adult")
    X = df[list(ADULT_NUMERIC + ADULT_CATEGORICAL)]
    X = X[[c for c in ADULT_COLUMNS if c in X.columns]]
    check_features(X, ADULT_NUMERIC, ADULT_CATEGORICAL, "adult")
    return TabularData("adult", X, y, classes, ADULT_NUMERIC, ADULT_CATEGORICAL, ADULT_SOURCE)


def load_wine_quality(bundle_dir: Path | None = None) -> TabularData:
    """UCI Wine Quality, red + white (6,497 rows, 11 features, quality 3..9 as 7 classes)."""
    frames = [
        pd.read_csv(io.BytesIO(read_bundled(name, bundle_dir)), sep=";")
        for name in ("winequality-red.csv", "winequality-white.csv")
    ]
    df = pd.concat(frames, ignore_index=True)
    y, classes = encode_labels(df.pop("quality"), "wine_quality")
    numeric = tuple(df.columns)
    check_features(df, numeric, (), "wine_quality")
    return TabularData("wine_quality", df, y, classes, numeric, (), WINE_SOURCE)


def load_breast_cancer() -> TabularData:
    """Breast Cancer Wisconsin (Diagnostic), 569 x 30, as shipped by scikit-learn."""
    from sklearn.datasets import load_breast_cancer as sk_load

    bunch = sk_load(as_frame=True)
    X = bunch.data
    y = bunch.target.to_numpy().astype(np.int64)
    numeric = tuple(X.columns)
    check_features(X, numeric, (), "breast_cancer")
    return TabularData(
        "breast_cancer", X, y, tuple(str(c) for c in bunch.target_names), numeric, (),
        "Breast Cancer Wisconsin (Diagnostic), Wolberg et al., via scikit-learn",
    )


def load_csv(
    path: str | Path | None,
    target: str | None,
    numeric: list[str] | None = None,
    categorical: list[str] | None = None,
    drop: list[str] | None = None,
    sep: str | None = None,
    name: str = "csv",
) -> TabularData:
    """A user's CSV: numeric and categorical columns detected from dtypes unless listed explicitly."""
    if not path:
        raise DataError("dataset=csv needs dataset.path=FILE.csv")
    if not target:
        raise DataError("dataset=csv needs dataset.target=COLUMN (the label column)")
    file = Path(str(path)).expanduser()
    if not file.is_file():
        raise DataError(f"CSV file not found: {file} (dataset.path; relative to the directory kdx was started in)")
    try:
        df = pd.read_csv(file, sep=sep, engine="python" if sep is None else "c")
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"cannot read CSV {file}: {first}") from None
    if target not in df.columns:
        raise DataError(f"target column '{target}' not in {file.name}; columns are {list(df.columns)}")
    unknown_drop = [c for c in (drop or []) if c not in df.columns]
    if unknown_drop:
        raise DataError(f"dataset.drop names column(s) {unknown_drop} not in {file.name}")
    y, classes = encode_labels(df.pop(target), name)
    df = df.drop(columns=list(drop or []))
    listed = set(numeric or []) | set(categorical or [])
    if numeric is None:
        numeric = [c for c in df.columns if c not in listed and pd.api.types.is_numeric_dtype(df[c])
                   and not pd.api.types.is_bool_dtype(df[c])]
    if categorical is None:
        categorical = [c for c in df.columns if c not in set(numeric)]
    overlap = set(numeric) & set(categorical)
    if overlap:
        raise DataError(f"column(s) {sorted(overlap)} listed as both numeric and categorical")
    X = df[[c for c in df.columns if c in set(numeric) | set(categorical)]]
    check_features(X, tuple(numeric), tuple(categorical), name)
    X = X.astype({c: "object" for c in categorical})
    return TabularData(name, X, y, classes, tuple(numeric), tuple(categorical), str(file))
