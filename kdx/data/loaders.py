"""Loaders for the bundled study datasets and for user CSV files."""

from __future__ import annotations

import bz2
import contextlib
import gzip
import hashlib
import io
import logging
import lzma
import warnings
import zipfile
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from kdx.data.base import TabularData, check_features, check_task, distinct_values, encode_labels, regression_target
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
    text = resources.files("kdx.data").joinpath("bundled", "SHA256SUMS").read_text()
    return {name: digest for digest, name in (line.split() for line in text.splitlines() if line.strip())}


def read_bundled(name: str, bundle_dir: Path | None = None) -> bytes:
    """Return the raw bytes of a bundled file after checking them against the published SHA-256."""
    root = Path(bundle_dir) if bundle_dir else resources.files("kdx.data").joinpath("bundled")
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


CLASSIFICATION = ("auto", "classification")


def load_adult(bundle_dir: Path | None = None, task: str = "auto") -> TabularData:
    """UCI Adult: adult.data + adult.test (48,842 rows, 14 features); ' ?' is missing."""
    check_task(task, "adult", CLASSIFICATION)
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


def load_wine_quality(bundle_dir: Path | None = None, task: str = "auto") -> TabularData:
    """UCI Wine Quality, red + white (6,497 rows, 11 features, quality 3..9 as 7 classes; with
    task=regression the grade as a number, the classic regression target of this table)."""
    check_task(task, "wine_quality")
    frames = [
        pd.read_csv(io.BytesIO(read_bundled(name, bundle_dir)), sep=";")
        for name in ("winequality-red.csv", "winequality-white.csv")
    ]
    df = pd.concat(frames, ignore_index=True)
    quality = df.pop("quality")
    numeric = tuple(df.columns)
    check_features(df, numeric, (), "wine_quality")
    if task == "regression":
        return TabularData("wine_quality", df, regression_target(quality, "wine_quality"), ("quality",), numeric, (),
                           WINE_SOURCE, task="regression")
    y, classes = encode_labels(quality, "wine_quality")
    return TabularData("wine_quality", df, y, classes, numeric, (), WINE_SOURCE)


DIABETES_SOURCE = ("Diabetes (Efron et al. 2004, Least Angle Regression), via scikit-learn: 442 patients, 10 baseline "
                   "variables, disease progression one year later")


def load_diabetes(task: str = "auto") -> TabularData:
    """scikit-learn's diabetes table (442 x 10), unscaled (`scaled=False`): the target, a quantitative measure of
    disease progression one year after baseline (25..346), is predicted as a number."""
    from sklearn.datasets import load_diabetes as sk_load

    check_task(task, "diabetes", ("auto", "regression"))
    bunch = sk_load(as_frame=True, scaled=False)
    X = bunch.data
    numeric = tuple(X.columns)
    check_features(X, numeric, (), "diabetes")
    return TabularData("diabetes", X, regression_target(bunch.target, "diabetes"), ("progression",), numeric, (),
                       DIABETES_SOURCE, task="regression")


def load_breast_cancer(task: str = "auto") -> TabularData:
    """Breast Cancer Wisconsin (Diagnostic), 569 x 30, as shipped by scikit-learn."""
    from sklearn.datasets import load_breast_cancer as sk_load

    check_task(task, "breast_cancer", CLASSIFICATION)

    bunch = sk_load(as_frame=True)
    X = bunch.data
    y = bunch.target.to_numpy().astype(np.int64)
    numeric = tuple(X.columns)
    check_features(X, numeric, (), "breast_cancer")
    return TabularData(
        "breast_cancer", X, y, tuple(str(c) for c in bunch.target_names), numeric, (),
        "Breast Cancer Wisconsin (Diagnostic), Wolberg et al., via scikit-learn",
        label_values=tuple(int(v) for v in np.unique(y)),
    )


DELIMITERS = (",", ";", "\t", "|")
TYPO_SHARE = 0.9  # an auto-detected text column whose values are at least this share numbers is flagged
REGRESSION_LEVELS = 20  # a numeric target with more distinct values (and > 5 % of rows) looks continuous


def _as_list(value) -> list[str] | None:
    """A config list of column names; a single name (dataset.drop=id) is a one-element list."""
    if value is None:
        return None
    if isinstance(value, (str, int, float)):
        return [str(value)]
    return [str(v) for v in value]


# Compressed tables are recognised by their first bytes, whatever the file is called (pandas' names).
MAGIC = ((b"\x1f\x8b", "gzip"), (b"BZh", "bz2"), (b"\xfd7zXZ\x00", "xz"), (b"PK\x03\x04", "zip"),
         (b"\x28\xb5\x2f\xfd", "zstd"))


def _compression(file: Path) -> str | None:
    with open(file, "rb") as fh:
        head = fh.read(8)
    return next((kind for magic, kind in MAGIC if head.startswith(magic)), None)


def _first_line(file: Path, compression: str | None, encoding: str) -> str:
    """The header line of a text table, decompressed (a zip archive's only member)."""
    try:
        if compression == "zip":
            with zipfile.ZipFile(file) as archive:
                members = [m for m in archive.namelist() if not m.endswith("/")]
                if len(members) != 1:
                    raise DataError(f"{file.name} is a zip archive of {len(members)} files; kdx reads a zip holding "
                                    "exactly one table")
                with archive.open(members[0]) as raw:
                    return io.TextIOWrapper(raw, encoding=encoding, errors="replace").readline()
        if compression == "zstd":
            return ""  # pandas reads it (with the zstandard package); the delimiter is then sniffed by pandas
        opener = {"gzip": gzip.open, "bz2": bz2.open, "xz": lzma.open, None: open}[compression]
        with opener(file, "rt", encoding=encoding, errors="replace") as fh:
            return fh.readline()
    except (OSError, EOFError, lzma.LZMAError, zipfile.BadZipFile) as exc:
        raise DataError(f"{file.name} looks {compression}-compressed but cannot be decompressed ({exc}); "
                        "is it truncated?") from None


def _sniff(file: Path, compression: str | None, encoding: str) -> str | None:
    """The delimiter of a text table: the most frequent of , ; tab | in the header line (never a letter)."""
    header = _first_line(file, compression, encoding)
    if compression == "zstd":
        return None
    counts = {d: header.count(d) for d in DELIMITERS}
    best = max(counts, key=counts.get)
    if counts[best] == 0:
        shown = header.strip()[:60]
        if any(not c.isprintable() for c in shown):
            raise DataError(f"{file.name} is not a text table (its first bytes are binary) nor a compressed one kdx "
                            "recognises (gzip, bz2, xz, zip, zstd) or Parquet (.parquet)")
        raise DataError(f"{file.name} has a single column (no , ; tab or | in its header {shown!r}): "
                        "kdx needs feature columns and a target; set dataset.sep if the delimiter is another one")
    return best


def _one_reader_thread():
    """pandas (≥ 3.1) reads a large CSV in parallel chunks (one thread per core) and concatenates them: at its
    peak about three times the table's memory, against about twice read by one thread, which is a little slower.
    A table's memory is what limits its size on one machine, so kdx reads with one thread."""
    try:
        pd.get_option("mode.max_threads")
    except (KeyError, pd.errors.OptionError):
        return contextlib.nullcontext()
    return pd.option_context("mode.max_threads", 1)


def read_table(file: Path, sep: str | None = None, encoding: str = "utf-8-sig") -> pd.DataFrame:
    """A table file as a DataFrame: Parquet by extension, else CSV (compression recognised by its first bytes,
    the delimiter sniffed unless `sep` is given); every failure one DataError line."""
    if file.suffix.lower() in (".parquet", ".pq"):
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise DataError("reading Parquet needs pyarrow: pip install 'kdx[parquet]'") from None
        try:
            return pd.read_parquet(file)
        except Exception as exc:  # pyarrow raises its own types for corrupt files
            raise DataError(f"cannot read Parquet file {file}: {str(exc).splitlines()[0]}") from None
    if file.stat().st_size == 0:
        raise DataError(f"{file} is empty")
    compression = _compression(file)
    try:
        with _one_reader_thread():
            return pd.read_csv(file, sep=sep or _sniff(file, compression, encoding), encoding=encoding,
                               compression=compression, engine=None if sep or compression != "zstd" else "python")
    except LookupError:
        raise DataError(f"unknown dataset.encoding {encoding!r} (e.g. utf-8, latin-1, cp1252)") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"cannot decode {file.name} as {encoding} ({exc.reason} at byte {exc.start}); set "
                        "dataset.encoding, e.g. dataset.encoding=latin-1") from None
    except ImportError as exc:  # zstd needs the zstandard package
        raise DataError(f"cannot read {file.name}: {str(exc).splitlines()[0]}") from None
    except (OSError, EOFError, lzma.LZMAError, zipfile.BadZipFile, pd.errors.ParserError,
            pd.errors.EmptyDataError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"cannot read CSV {file}: {first}") from None


def _numeric_with_typos(df: pd.DataFrame, columns: list[str]) -> dict[str, list]:
    """Text columns whose values are mostly numbers: column → the values that are not (in order of appearance).
    Each distinct value is parsed once, weighted by how often it occurs."""
    found = {}
    for c in columns:
        if pd.api.types.is_numeric_dtype(df[c]) or df[c].dropna().empty:
            continue
        codes, uniques = pd.factorize(df[c], use_na_sentinel=True)
        counts = np.bincount(codes[codes >= 0], minlength=len(uniques))
        number = pd.to_numeric(pd.Series(np.asarray(uniques, dtype=object)), errors="coerce").notna().to_numpy()
        if counts[number].sum() >= TYPO_SHARE * counts.sum():
            found[c] = list(np.asarray(uniques, dtype=object)[~number])
    return found


def _coerce_numeric(df: pd.DataFrame, columns: list[str], name: str) -> None:
    """Columns the user lists as numeric: unparseable cells become missing, counted in a warning."""
    for c in columns:
        if c in df and not pd.api.types.is_numeric_dtype(df[c]):
            parsed = pd.to_numeric(df[c], errors="coerce")
            bad = int(parsed.isna().sum() - df[c].isna().sum())
            if bad == int(df[c].notna().sum()):
                raise DataError(f"{name}: column '{c}' is listed as numeric but none of its values is a number "
                                f"(e.g. {df[c].dropna().iloc[0]!r}); list it under dataset.categorical")
            logging.getLogger("kdx").warning("%s: column '%s' listed as numeric: %d unparseable cell(s) (e.g. %r) "
                                             "treated as missing", name, c, bad,
                                             df[c][parsed.isna() & df[c].notna()].iloc[0])
            df[c] = parsed


def resolve_task(raw: pd.Series, name: str, task: str) -> str:
    """dataset.task=auto: a numeric target that looks continuous (more than REGRESSION_LEVELS distinct values, and
    fractional or distinct in over 5 % of rows) is a regression, anything else classification; said in the log
    with the override either way when the target is numeric. An explicit task is kept, except classification of a
    target that looks continuous (one class per value), refused with the override named."""
    check_task(task, name)
    if not pd.api.types.is_numeric_dtype(raw) or pd.api.types.is_bool_dtype(raw):
        return "classification" if task == "auto" else task
    levels = raw.nunique()
    fractional = bool((raw.dropna() % 1 != 0).any())
    continuous = levels > REGRESSION_LEVELS and (fractional or levels > 0.05 * len(raw))
    values = f"{levels} distinct numeric values{' (not whole numbers)' if fractional else ''}"
    if task == "classification" and continuous:
        raise DataError(f"{name}: target '{raw.name}' has {values}: as classes each value would be its own class; "
                        "predict it as a number with dataset.task=regression, or bin it into classes")
    if task != "auto":
        return task
    log = logging.getLogger("kdx")
    if continuous:
        log.info("%s: target '%s' has %s: predicted as a number, a regression (dataset.task=regression says so "
                 "explicitly)", name, raw.name, values)
        return "regression"
    log.info("%s: target '%s' has %s: classification, one class per value (dataset.task=regression to predict it "
             "as a number)", name, raw.name, values)
    return "classification"


IDENTIFIER_SHARE = 0.5  # a text column with a distinct value in at least this share of rows looks like an id
FREE_TEXT_LENGTH = 25  # characters: text values this long on average, mostly with spaces, look like free text
DATE_SHARE = 0.9  # a text column whose values parse as dates in at least this share is a date column
SAMPLE = 500  # values looked at per column for the date and free-text checks


def _looks_like_dates(values: pd.Series) -> bool:
    sample = values.astype(str).head(SAMPLE)
    if sample.str.fullmatch(r"[+-]?\d+([.,]\d+)?").mean() > 0.5:  # plain numbers are not dates
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = pd.to_datetime(sample, errors="coerce", format="mixed")
    return bool(parsed.notna().mean() >= DATE_SHARE)


def column_notes(df: pd.DataFrame, categorical: list[str], numeric: list[str]) -> tuple[list[str], list[str]]:
    """Columns a user's table brings that one-hot encoding would turn into noise, each with one line to read
    before training: (notes, constant columns to drop). Identifiers and free text are only named (the user
    decides: dataset.drop), dates are named with the choice to drop or parse them (dataset.parse_dates), and
    constant columns are dropped — and listed, so no column leaves unsaid."""
    notes, constant = [], []
    rows = len(df)
    for c in df.columns:
        column = df[c]
        present = column.notna().to_numpy()
        if not present.any():  # an entirely empty column is refused by check_features (a wrong delimiter, often)
            continue
        first = column.iloc[int(present.argmax())]
        if present.all() and bool((column == first).all()):
            constant.append(c)
            notes.append(f"column '{c}' holds one value ({first!r}) in every row: constant, so dropped")
            continue
        if c in categorical:
            values = column[present]
            distinct = values.nunique()
            if _looks_like_dates(values):
                notes.append(f"column '{c}' holds dates: as a category every date is a one-hot column ({distinct}); "
                             f"drop it with dataset.drop=[{c}] or parse it into days with dataset.parse_dates=[{c}]")
                continue
            text = values.astype(str).head(SAMPLE)
            if text.str.len().mean() >= FREE_TEXT_LENGTH and text.str.contains(" ").mean() > 0.5:
                notes.append(f"column '{c}' looks like free text ({distinct} distinct values, "
                             f"{text.str.len().mean():.0f} characters on average): each text becomes a one-hot "
                             f"column; drop it with dataset.drop=[{c}]")
            elif distinct >= IDENTIFIER_SHARE * rows and distinct > 20:
                notes.append(f"column '{c}' has a distinct value in {distinct / rows:.0%} of rows: an identifier? it "
                             f"becomes {distinct} one-hot columns; drop it with dataset.drop=[{c}]")
        elif c in numeric and present.all() and rows > 20 and pd.api.types.is_integer_dtype(column):
            v = column.to_numpy()
            if (v[1:] > v[:-1]).all() or (v[1:] < v[:-1]).all():  # distinct and in order
                notes.append(f"column '{c}' numbers the rows (distinct, in order): a row number or identifier? "
                             f"drop it with dataset.drop=[{c}]")
    return notes, constant


def _parse_dates(df: pd.DataFrame, columns: list[str], name: str) -> None:
    """dataset.parse_dates: each listed column becomes a number, days since 1970-01-01 (unparseable: missing)."""
    for c in columns:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parsed = pd.to_datetime(df[c], errors="coerce", format="mixed")
        if parsed.notna().sum() == 0 and df[c].notna().any():
            raise DataError(f"{name}: dataset.parse_dates names '{c}', but none of its values is a date "
                            f"(e.g. {df[c].dropna().iloc[0]!r})")
        if getattr(parsed.dt, "tz", None) is not None:
            parsed = parsed.dt.tz_convert(None)
        df[c] = (parsed - pd.Timestamp("1970-01-01")) / pd.Timedelta(days=1)


def _objects(column: pd.Series) -> pd.Series:
    """A categorical column as object dtype (what kdx's preprocessing and its raw-row frames read); the cells of
    a text column share one Python string per distinct value (a 10M-row column: 80 MB of pointers, not 10M
    strings)."""
    if isinstance(column.dtype, pd.StringDtype):
        codes, table = distinct_values(column)
        return pd.Series(table[codes], index=column.index, name=column.name, dtype=object)
    return column.astype(object)


def load_csv(
    path: str | Path | None,
    target: str | None,
    numeric: list[str] | None = None,
    categorical: list[str] | None = None,
    drop: list[str] | None = None,
    sep: str | None = None,
    name: str = "csv",
    encoding: str = "utf-8-sig",
    parse_dates: list[str] | None = None,
    task: str = "auto",
) -> TabularData:
    """A user's table (CSV, or Parquet by extension): numeric and categorical columns detected from dtypes
    unless listed explicitly. A UTF-8 byte-order mark is ignored (the default encoding utf-8-sig)."""
    if not path:
        raise DataError("dataset=csv needs dataset.path=FILE.csv")
    if target is None or str(target) == "":
        raise DataError("dataset=csv needs dataset.target=COLUMN (the label column)")
    target = str(target)  # dataset.target=2024 arrives as an int
    numeric, categorical, drop = _as_list(numeric), _as_list(categorical), _as_list(drop) or []
    dates = _as_list(parse_dates) or []
    file = Path(str(path)).expanduser()
    if file.is_dir():
        raise DataError(f"dataset.path {file} is a directory, not a file")
    if not file.is_file():
        raise DataError(f"CSV file not found: {file} (dataset.path; relative to the directory kdx was started in)")
    df = read_table(file, sep, encoding)
    df.columns = [str(c) for c in df.columns]
    if df.empty:
        raise DataError(f"{file.name} has a header but no rows")
    if target not in df.columns:
        raise DataError(f"target column '{target}' not in {file.name}; columns are {list(df.columns)}")
    if target in drop:
        raise DataError(f"dataset.drop names the target column '{target}'; remove it from dataset.drop")
    unknown = [c for c in drop + dates + (numeric or []) + (categorical or []) if c not in df.columns]
    if unknown:
        raise DataError(f"dataset.drop/numeric/categorical/parse_dates name column(s) {unknown} not found in "
                        f"{file.name}; columns are {list(df.columns)}")
    if target in dates:
        raise DataError(f"dataset.parse_dates names the target column '{target}'; remove it from dataset.parse_dates")
    task = resolve_task(df[target], name, task)
    if task == "regression":
        y, classes = regression_target(df.pop(target), name), (target,)
    else:
        y, classes = encode_labels(df.pop(target), name)
    df = df.drop(columns=drop)
    _parse_dates(df, dates, name)
    if numeric is not None:
        numeric = [*numeric, *(c for c in dates if c not in numeric)]
    listed = set(numeric or []) | set(categorical or []) | set(dates)
    if numeric is not None:
        _coerce_numeric(df, numeric, name)
    else:
        typos = _numeric_with_typos(df, [c for c in df.columns if c not in listed])
        if typos:
            c, bad = next(iter(typos.items()))
            shown = ", ".join(repr(v) for v in bad[:5]) + (" …" if len(bad) > 5 else "")
            raise DataError(f"{name}: column '{c}' holds numbers except {len(bad)} value(s) ({shown}), so it would "
                            f"be read as categorical; list it as dataset.numeric=[{c}, ...] (unparseable cells "
                            f"become missing) or dataset.categorical=[{c}] to keep it categorical")
        numeric = [c for c in df.columns if c not in listed and pd.api.types.is_numeric_dtype(df[c])
                   and not pd.api.types.is_bool_dtype(df[c])] + dates
    if categorical is None:
        categorical = [c for c in df.columns if c not in set(numeric)]
    overlap = set(numeric) & set(categorical)
    if overlap:
        raise DataError(f"column(s) {sorted(overlap)} listed as both numeric and categorical")
    notes, constant = column_notes(df[[c for c in df.columns if c in set(numeric) | set(categorical)]],
                                   categorical, numeric)
    numeric = [c for c in numeric if c not in constant]
    categorical = [c for c in categorical if c not in constant]
    X = df[[c for c in df.columns if c in set(numeric) | set(categorical)]]
    check_features(X, tuple(numeric), tuple(categorical), name)
    X = X.assign(**{c: _objects(X[c]) for c in categorical})
    return TabularData(name, X, y, classes, tuple(numeric), tuple(categorical), str(file),
                       notes={"columns": notes, "dropped_constant": constant} if notes else {}, task=task)
