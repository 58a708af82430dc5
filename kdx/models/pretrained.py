"""A teacher the user already trained (teacher=pretrained teacher.path=FILE): read, checked, never retrained.

It reads the dataset's raw columns, as it did when it was trained. kdx's other models read encoded rows; this
one is given the seed's rows as `kdx.data.rows.Rows`, encoded rows that carry the same rows' raw code rows and
dataset row ids, and scores the raw ones (each set of rows once: its logits are remembered by row ids). Rows
without raw values are refused, never approximated; perturbed copies for stability get theirs from the clean
raw rows (`perturbed`). In the Shapley game it is evaluated directly on raw rows mixed feature by feature
(`raw_logits`), see kdx.measure.explain. A regressor's predictions are standardized like every kdx model's
(kdx.data.preprocess.Preprocessor.fit_target): `fit`, given a seed's training rows, takes their target's mean
and sd.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.special import softmax

from kdx.data.preprocess import standardization
from kdx.data.raw import RawCodec
from kdx.errors import ConfigError, DataError, KdxError
from kdx.models.base import Classifier
from kdx.models.teacher_files import TeacherFile, read_teacher_file
from kdx.store.cache import file_sha256

log = logging.getLogger("kdx")


MEMO_SETS = 8  # sets of rows whose logits a pretrained teacher remembers (a seed's parts and their slices)


class PretrainedTeacher(Classifier):
    """`path`: an XGBoost (.json/.ubj), LightGBM (.txt) or CatBoost (.cbm) model, a scikit-learn estimator or
    Pipeline saved with skops (.skops), an ONNX classifier (.onnx), or — only with `allow_pickle` — a pickle
    or joblib file. `trusted_types`: skops types to trust beyond skops' defaults. `classes`: the dataset's labels
    in the order of the model's outputs, for a file that does not name its classes (booster formats) when the
    labels are not the integers 0..C-1 the model was trained on."""

    family = "pretrained"
    input_space = "raw"
    trains = False

    def __init__(self, path: str | None = None, allow_pickle: bool = False, trusted_types: list[str] | None = None,
                 classes: list | None = None, seed: int = 0, device: str = "cpu"):
        if path in (None, "", "???"):
            raise ConfigError("teacher=pretrained needs teacher.path=FILE (an XGBoost .json/.ubj, LightGBM .txt, "
                              "CatBoost .cbm, skops .skops or ONNX .onnx model)")
        if not isinstance(allow_pickle, bool):
            raise ConfigError(f"teacher.allow_pickle must be true or false, got {allow_pickle!r}")
        self.path = Path(str(path)).expanduser()
        self.allow_pickle = allow_pickle
        self.trusted_types = tuple(trusted_types or ())
        if classes is not None and (isinstance(classes, (str, int, float)) or len(classes) < 2):
            raise ConfigError(f"teacher.classes must list the dataset's labels in the model's output order, e.g. "
                              f"teacher.classes=[malignant, benign]; got {classes!r}")
        self.classes = None if classes is None else tuple(str(c) for c in classes)
        self.seed, self.device = seed, device
        start = time.perf_counter()
        self.file: TeacherFile = read_teacher_file(self.path, allow_pickle, self.trusted_types)
        self.load_seconds = time.perf_counter() - start
        self.sha256 = file_sha256(self.path)
        self.codec: RawCodec | None = None
        self._memo: dict[bytes, np.ndarray] = {}

    # -- the data it reads ---------------------------------------------------------------------------------
    def attach(self, data, codec: RawCodec) -> PretrainedTeacher:
        """Check the model against the dataset (feature names or count, categorical columns, classes) and
        score a few rows; every mismatch is one line naming it."""
        self.codec = codec
        features, f = tuple(data.features), self.file
        where = f"teacher.path={self.path.name}"
        if f.regression != data.regression:
            fix = ("give a regressor file, or read the target as classes (dataset.task=classification)"
                   if data.regression else "give a classifier file")
            raise DataError(f"{where}: the file holds a {'regressor' if f.regression else 'classifier'} ({f.kind}), "
                            f"but {data.name} is a {'regression' if data.regression else 'classification'}: {fix}")
        self.target_values_ = data.y if data.regression else None
        if f.feature_names is None:
            if f.n_features is not None and f.n_features != len(features):
                raise DataError(f"{where}: the teacher expects {f.n_features} features, {data.name} has "
                                f"{len(features)} (the model records no column names, so kdx feeds the dataset's "
                                "columns in order)")
            if data.categorical:
                raise DataError(f"{where}: the model records no column names and {data.name} has categorical "
                                f"column(s) {list(data.categorical)}: train it on a DataFrame so it records them")
            self.columns_ = features
        else:
            missing = [n for n in f.feature_names if n not in features]
            if missing:
                raise DataError(f"{where}: the teacher expects {len(f.feature_names)} features, {data.name} has "
                                f"{len(features)}: missing {', '.join(repr(m) for m in missing[:5])}"
                                + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
            unused = [c for c in features if c not in f.feature_names]
            if unused:
                log.info("%s does not read %s of %s: they get zero attribution from it", self.path.name,
                         unused, data.name)
            self.columns_ = tuple(f.feature_names)
        if f.categorical is not None:
            wrong = [c for c in self.columns_ if (c in f.categorical) != (c in data.categorical)]
            if wrong:
                c = wrong[0]
                raise DataError(f"{where}: the teacher reads {c!r} as "
                                f"{'categorical' if c in f.categorical else 'numeric'}, {data.name} has it as "
                                f"{'categorical' if c in data.categorical else 'numeric'}; list it under "
                                f"dataset.{'categorical' if c in f.categorical else 'numeric'}")
        self.order_ = None
        try:
            probe = self._raw(codec.encode(data.X.iloc[:8]))
        except KdxError:
            raise
        except Exception as exc:  # noqa: BLE001 — the library's own complaint about the rows, in one line
            raise DataError(f"{where}: the teacher cannot score {data.name}'s rows ({type(exc).__name__}: "
                            f"{(str(exc).strip().splitlines() or [''])[0][:200]})") from None
        if data.regression:
            self.output_labels_ = tuple(data.class_names)
            return self
        if probe.shape[1] != data.n_classes:
            raise DataError(f"{where}: the teacher has {probe.shape[1]} classes, {data.name} has {data.n_classes} "
                            f"({', '.join(data.class_names)})")
        labels = self._output_labels(data, where)
        order = np.array([labels.index(c) for c in data.class_names])
        self.order_ = None if (order == np.arange(len(order))).all() else order
        self.output_labels_ = labels
        return self

    def _output_labels(self, data, where: str) -> tuple[str, ...]:
        """The dataset's class names in the order of the model's outputs. A file that names its classes
        (scikit-learn, ONNX, CatBoost trained on labels) is matched by name; a file whose outputs are only
        positions 0..C-1 (XGBoost, LightGBM) is matched by value where the dataset's labels are exactly the
        integers 0..C-1, and otherwise needs teacher.classes: nothing is guessed from sorted names."""
        names, n = tuple(data.class_names), data.n_classes
        positions = tuple(str(k) for k in range(n))
        named = self.file.classes
        if named is not None and tuple(named) == positions and set(named) != set(names):
            named = None  # labels 0..C-1 recorded by the file are positions, not the dataset's names
        if self.classes is not None:
            if len(self.classes) != n or set(self.classes) != set(names):
                raise DataError(f"{where}: teacher.classes={list(self.classes)} must list each of {data.name}'s "
                                f"{n} labels {list(names)} once, in the model's output order")
            if named is not None and tuple(named) != self.classes:
                raise DataError(f"{where}: the file names its classes {list(named)} in that order; teacher.classes="
                                f"{list(self.classes)} contradicts it: drop teacher.classes")
            return self.classes
        if named is not None:
            if set(named) != set(names):
                raise DataError(f"{where}: the teacher's classes {list(named)} are not {data.name}'s {list(names)}")
            return tuple(named)
        values = data.integer_labels()
        if values is not None and sorted(values) == list(range(n)):
            return tuple(names[values.index(k)] for k in range(n))  # output k is the class whose label is k
        raise DataError(f"{where}: the file does not name its classes (its outputs are 0..{n - 1}) and {data.name}'s "
                        f"labels {list(names)} are not the integers 0..{n - 1}, so kdx cannot tell which output is "
                        f"which: give the labels in the model's output order, e.g. teacher.classes="
                        f"[{', '.join(names[::-1] if n == 2 else names)}]")

    # -- predictions ---------------------------------------------------------------------------------------
    def _frame(self, codes: np.ndarray):
        if self.codec is None:
            raise KdxError("the pretrained teacher has not been given the dataset (attach)")
        return self.codec.frame(np.asarray(codes, dtype=np.float64), self.file.categories_as)[list(self.columns_)]

    def _raw(self, codes: np.ndarray) -> np.ndarray:
        z = np.asarray(self.file.logits(self.file.prepare(self._frame(codes))), dtype=np.float64)
        if self.file.regression:
            return self._standardized(z)
        return z if self.order_ is None else z[:, self.order_]

    def _standardized(self, z: np.ndarray) -> np.ndarray:
        """A regressor's predictions in the units kdx's models fit (the seed's training target's mean and sd);
        as they are before `fit` (the checks at `attach`)."""
        target = getattr(self, "target_", None)
        return z if target is None else (z - target[0]) / target[1]

    def raw_logits(self, codes: np.ndarray) -> np.ndarray:
        """Logits on raw rows given as a code matrix (kdx.data.raw)."""
        return self._raw(codes)

    @staticmethod
    def to_raw(X: np.ndarray) -> np.ndarray:
        """The raw code rows that `X` (kdx.data.rows.Rows) carries."""
        raw = getattr(X, "raw", None)
        if raw is None:
            raise KdxError(f"the pretrained teacher reads raw rows: it was given {len(X)} encoded rows without "
                           "their raw values (kdx.data.rows.Rows)")
        return raw

    def perturbed(self, clean: np.ndarray, clean_encoded: np.ndarray, noisy_encoded: np.ndarray,
                  changed: np.ndarray, preprocessor) -> np.ndarray:
        """Raw rows of perturbed copies of data rows (kdx.data.raw.RawCodec.perturb), `preprocessor`: the seed's."""
        return self.codec.perturb(clean, clean_encoded, noisy_encoded, preprocessor, changed)

    def logits(self, X: np.ndarray) -> np.ndarray:
        raw = self.to_raw(X)
        key = np.ascontiguousarray(X.ids).tobytes() + bytes(str(raw.shape), "ascii")
        if key not in self._memo:
            while len(self._memo) >= MEMO_SETS:
                self._memo.pop(next(iter(self._memo)))
            self._memo[key] = self._raw(raw)
        return self._memo[key]

    def logits_frame(self, rows) -> np.ndarray:
        """Logits on a DataFrame of raw rows (kdx.load_run)."""
        return self._raw(self.codec.encode(rows))

    def prediction_call(self, X: np.ndarray):
        prepared = self.file.prepare(self._frame(self.to_raw(X)))  # the model's own input, built untimed
        order = self.order_

        def call():
            z = self.file.logits(prepared)
            if self.file.regression:
                return self._standardized(z)
            return softmax(z if order is None else z[:, order], axis=1)
        return call

    def fit(self, X, y, X_val, y_val, n_classes, objective=None, signals=None):
        """Nothing is trained: the model is used as it is. A regressor takes the standardization of these rows'
        target (X: the seed's training rows as kdx.data.rows.Rows, whose ids name them), as the seed's
        preprocessing does, and forgets the predictions it remembered in other units."""
        if self.codec is None:
            raise KdxError("the pretrained teacher has not been given the dataset (attach)")
        if self.file.regression:
            self.to_raw(X)  # rows without their raw values and ids are refused
            if getattr(self, "target_values_", None) is None:  # a checkpoint keeps the standardization, not the target
                raise KdxError("the pretrained teacher has not been given the dataset's target (attach)")
            self.target_ = standardization(self.target_values_[X.ids])
            self._memo = {}
        self.n_classes_ = n_classes
        self.history_ = {"fit_seconds": self.load_seconds, "trained": False, "format": self.file.format,
                         "path": str(self.path), "sha256": self.sha256}
        return self

    # -- cost ----------------------------------------------------------------------------------------------
    def _counts(self) -> tuple[float, float]:
        if not hasattr(self, "counts_"):
            self.counts_ = self.file.counts()
        return self.counts_

    def n_params(self) -> int:
        """Boosters: as kdx's own (per split its feature and threshold, per leaf its value); scikit-learn:
        the numbers in its fitted arrays; ONNX: the values of its initializers and node attributes."""
        return self._counts()[0]

    def flops(self) -> float:
        """Boosters: per tree the mean leaf depth plus one; NaN for other formats (undefined there)."""
        return self._counts()[1]

    def size_bytes(self) -> int:
        return self.path.stat().st_size if self.path.is_file() else len(self._bytes)

    def memory_bytes(self) -> int:
        params = self._counts()[0]
        return int(8 * params) if np.isfinite(params) else self.size_bytes()

    def get_params(self) -> dict:
        return {"path": str(self.path), "allow_pickle": self.allow_pickle, "trusted_types": list(self.trusted_types),
                "classes": None if self.classes is None else list(self.classes), "sha256": self.sha256}

    def save(self, stem: Path) -> Path:
        import joblib

        path = Path(stem).with_suffix(".joblib")
        joblib.dump(self, path, compress=3)
        return path

    # A checkpoint holds the file's bytes, not the loaded library objects (an ONNX session cannot be pickled), nor
    # the dataset's target (a regressor keeps the standardization `fit` took from it).
    def __getstate__(self) -> dict:
        state = {k: v for k, v in self.__dict__.items() if k not in ("file", "_memo", "target_values_")}
        state["_bytes"] = self.path.read_bytes() if self.path.is_file() else self.__dict__.get("_bytes")
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        with tempfile.TemporaryDirectory() as folder:
            copy = Path(folder) / f"teacher{self.path.suffix}"
            copy.write_bytes(self._bytes)
            self.file = read_teacher_file(copy, self.allow_pickle, self.trusted_types)
        self._memo = {}
