"""The rows a run works on: the dataset a config names (with its `limits.rows` sample), its fingerprint, and
each seed's split and encoded parts (remembered in the process, so the jobs of a sweep prepare a seed once)."""

from __future__ import annotations

import ctypes
import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from kdx.config import instantiate_node, node_arguments
from kdx.data import TabularData
from kdx.data.preprocess import Preprocessor
from kdx.data.split import Split, make_split
from kdx.errors import DataError
from kdx.store.cache import content_key

log = logging.getLogger("kdx")


_DATASETS: dict[str, TabularData] = {}


def build_dataset(node: DictConfig) -> TabularData:
    """Load (and check) the dataset a config names; within one process (e.g. the jobs of a sweep run by
    Hydra's basic launcher) the same config is loaded once. A CSV is keyed by its size and mtime too."""
    args = node_arguments(node)
    path = args.get("path")
    stamp = None
    if path and Path(str(path)).expanduser().is_file():
        st = Path(str(path)).expanduser().stat()
        stamp = (st.st_size, st.st_mtime_ns)
    key = json.dumps([args, stamp], sort_keys=True, default=str)
    if key not in _DATASETS:
        _DATASETS.clear()  # keep one table in memory, not one per config ever seen
        _DATASETS[key] = instantiate_node("dataset", args)
        _return_freed_memory()
    return _DATASETS[key]


def _return_freed_memory() -> bool:
    """Hand the C heap's free pages back to the system (glibc's malloc_trim; elsewhere nothing, False). Reading
    a table frees about as much memory as the table takes (the parser's buffers and chunks, the columns'
    conversions); held, those pages would count in the process's memory for the rest of the run."""
    try:
        return bool(ctypes.CDLL(None).malloc_trim(0))
    except (OSError, AttributeError):  # not glibc (macOS, musl, Windows)
        return False


def subsample(data: TabularData, rows: int, seed: int = 0) -> TabularData:
    """A stratified sample of about `rows` rows that keeps at least 3 rows of every class (or quantile bin of a
    regression target) that has them."""
    if rows >= len(data.y):
        return data
    rng = np.random.default_rng(seed)
    keep = []
    strata = data.strata()
    for cls in np.unique(strata):
        members = np.flatnonzero(strata == cls)
        take = min(len(members), max(3, round(rows * len(members) / len(data.y))))
        keep.append(rng.choice(members, size=take, replace=False))
    idx = np.sort(np.concatenate(keep))
    return replace(data, X=data.X.iloc[idx].reset_index(drop=True), y=data.y[idx],
                   notes={**data.notes, "subsampled_rows": int(len(idx))})


def load_data(cfg: DictConfig) -> TabularData:
    """The dataset a run config names, with its `limits.rows` cap applied."""
    data = build_dataset(cfg.dataset)
    return data if cfg.limits.rows is None else subsample(data, cfg.limits.rows)


def fingerprint(data: TabularData) -> str:
    """SHA-256 of the rows, labels and column roles: any change in the data changes every cache key."""
    h = pd.util.hash_pandas_object(data.X, index=False).to_numpy().tobytes()
    return content_key(h.hex(), data.y.tobytes().hex(), data.class_names, data.numeric, data.categorical,
                       *([data.task] if data.regression else []))


class Rows(np.ndarray):
    """Encoded rows (rows × encoded columns) that carry the same rows' raw code rows (kdx.data.raw) and their
    dataset row ids: a seed's part as one value, for a model that reads raw columns (a pretrained teacher reads
    `raw`; every other model reads the encoded values and never notices). Selecting rows (`X[a:b]`, `X[idx]`)
    keeps the three paired; anything computed from the values (arithmetic, a subset of columns, `np.asarray`)
    is an array without them."""

    raw: np.ndarray | None
    ids: np.ndarray | None

    def __new__(cls, encoded: np.ndarray, raw: np.ndarray, ids: np.ndarray) -> Rows:
        if not (len(encoded) == len(raw) == len(ids)):
            raise ValueError(f"Rows: {len(encoded)} encoded, {len(raw)} raw and {len(ids)} ids do not pair up")
        rows = np.asarray(encoded).view(cls)
        rows.raw, rows.ids = raw, ids
        return rows

    def __array_finalize__(self, obj) -> None:
        self.raw = self.ids = None  # only __new__ and a selection of rows pair them

    def __array_wrap__(self, array, context=None, return_scalar=False):  # results of arithmetic: plain arrays
        array = array.view(np.ndarray)
        return array[()] if return_scalar else array

    def __getitem__(self, index):
        out = super().__getitem__(index)
        if isinstance(index, tuple):  # X[rows, :] selects rows; any other column choice drops the pairing
            if len(index) != 2 or not (isinstance(index[1], slice) and index[1] == slice(None)):
                return out.view(np.ndarray) if isinstance(out, np.ndarray) else out
            index = index[0]
        if not isinstance(out, Rows) or out.ndim != 2 or self.raw is None:
            return out.view(np.ndarray) if isinstance(out, np.ndarray) else out
        out.raw, out.ids = self.raw[index], self.ids[index]
        return out

    def __reduce__(self):  # pickled (e.g. to a worker) as the plain encoded array
        return np.asarray(self).__reduce__()


def contiguous(X: np.ndarray) -> np.ndarray:
    """`np.ascontiguousarray(X)`, keeping a `Rows`' raw code rows and ids paired with it."""
    if isinstance(X, Rows) and X.raw is not None:
        return Rows(np.ascontiguousarray(X), X.raw, X.ids)
    return np.ascontiguousarray(X)


def with_raw(sd: SeedData, codes: np.ndarray) -> SeedData:
    """The seed's data with each part's encoded rows paired with their raw code rows (`codes`: the dataset's,
    kdx.data.raw.RawCodec.encode) as `Rows`, for a teacher that reads raw columns."""
    return replace(sd, X={part: Rows(sd.X[part], codes[idx], idx) for part, idx in sd.split.parts().items()})


@dataclass
class SeedData:
    """A seed's split, the preprocessing fitted on its training rows and its encoded parts. `memo`: what the
    layers above compute once per seed from these rows (e.g. the test rows as an exported model's inputs),
    kept with them so every job of a sweep in this process reuses it."""

    split: Split
    preprocessor: Preprocessor
    X: dict[str, np.ndarray]
    y: dict[str, np.ndarray]
    memo: dict = field(default_factory=dict)


_PREPARED: dict[str, SeedData] = {}  # the last few seeds prepared in this process, by content


_PREPARED_KEEP = 10


def seed_data(data: TabularData, data_key: str, seed: int, split_args: dict) -> SeedData:
    """`prepare_seed`, remembered in this process by (data fingerprint, split, seed): the jobs of a sweep that
    run in one process (basic launcher) split and encode each seed once, not once per job (Adult: 0.6 s a
    seed). The arrays are shared, so nothing may write to them (checked with read-only copies on every study
    pair; not made read-only here because torch warns about every read-only array it wraps)."""
    key = content_key(data_key, split_args, seed)
    if key not in _PREPARED:
        while len(_PREPARED) >= _PREPARED_KEEP:
            _PREPARED.pop(next(iter(_PREPARED)))
        _PREPARED[key] = prepare_seed(data, seed, split_args)
    return _PREPARED[key]


def prepare_seed(data: TabularData, seed: int, split_args: dict) -> SeedData:
    """Split (seed = the unit of kdx.config.units_of), preprocessing fitted on train, encoded parts. A regression
    target is standardized with the training rows' mean and sd (every model fits and predicts it in those units;
    `Preprocessor.unscale_target` maps predictions back)."""
    split = split_of(data, seed, split_args)
    pre = Preprocessor(data.numeric, data.categorical).fit(data.X, split.train)
    if data.regression:
        pre.fit_target(data.y[split.train])
    parts = split.parts()
    X = {k: pre.transform(data.X, idx) for k, idx in parts.items()}
    for part, values in X.items():
        bad = ~np.isfinite(values).all(axis=0)
        if bad.any():
            columns = [pre.columns_[j] for j in np.flatnonzero(bad)][:5]
            raise DataError(f"{data.name}: column(s) {columns} are not finite after standardization in the {part} "
                            "rows (values too large to scale, e.g. 1e308); clip or rescale them")
    y = {k: pre.scale_target(data.y[idx]) if data.regression else data.y[idx] for k, idx in parts.items()}
    return SeedData(split, pre, X, y)


def split_of(data: TabularData, seed: int, split_args: dict) -> Split:
    """The seed's split (kdx.data.split.make_split), stratified on the classes or the target's quantile bins."""
    return make_split(data.strata(), seed, class_names=None if data.regression else data.class_names, **split_args)

