"""Model files a pretrained teacher can come from, one reader per format (teacher=pretrained).

Each reader loads the file without running code from it (pickle only when the user allows it), states what
the model records about its inputs and classes, and turns a frame of raw rows into the model's logits:
raw margins for the boosters (binary: [0, z]), log-probabilities for everything else (softmax of them is
the model's probabilities, so KD's soft targets are the model's own). A regressor (`regression`) gives its
predictions instead, rows × 1, in the target's units. A new format is one class here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from kdx.errors import ConfigError, DataError, MissingExtra
from kdx.models.boosting import installed

LOG_FLOOR = 1e-12  # log-probability of a class the model gives probability 0


def log_probabilities(p: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(p, dtype=np.float64), LOG_FLOOR, None))


def predictions(raw) -> np.ndarray:
    """A regressor's outputs as rows × 1, float64."""
    return np.asarray(raw, dtype=np.float64).reshape(-1, 1)


def binary_margins(raw) -> np.ndarray:
    raw = np.asarray(raw, dtype=np.float64)
    if raw.ndim == 1 or raw.shape[1] == 1:
        raw = raw.reshape(-1)
        return np.column_stack([np.zeros_like(raw), raw])
    return raw


def _need(module: str, what: str, extra: str) -> None:
    if not installed(module):
        raise MissingExtra(f"teacher.path={what} needs {module}: pip install 'kdx[{extra}]' (or make install)")


def _threads() -> int:
    import torch

    return max(1, torch.get_num_threads())  # the run's share of the machine (kdx.run.protocol.resolve_threads)


class TeacherFile:
    """A loaded model file. `feature_names`: the input columns it records (None: it takes the dataset's
    columns in order); `categorical`: which of them it reads as categories (None: not recorded);
    `classes`: the labels of its outputs in order (None: the file does not name them; see PretrainedTeacher)."""

    format = ""
    categories_as = "object"  # how categorical columns reach the model (kdx.data.raw.RawCodec.frame)
    feature_names: tuple[str, ...] | None = None
    n_features: int | None = None
    categorical: tuple[str, ...] | None = None
    classes: tuple[str, ...] | None = None
    n_classes: int | None = None
    regression = False  # a regressor: `logits` are its predictions (rows × 1)
    kind = ""  # what the file says it is, for messages (an objective, a loss, a class)

    def __init__(self, path: Path):
        self.path = path

    def prepare(self, frame: pd.DataFrame):
        """The model's input for a frame of its columns (in its order)."""
        return frame

    def logits(self, prepared) -> np.ndarray:
        raise NotImplementedError

    def counts(self) -> tuple[float, float]:
        """(stored values, operations per prediction); NaN where the format does not define them."""
        return float("nan"), float("nan")


def _tree_counts(trees: list[tuple[np.ndarray, np.ndarray]], outputs: int) -> tuple[float, float]:
    """As kdx's own boosters (kdx.models.ensemble): per split its feature and threshold, per leaf its value,
    one base per output; operations = per tree the cover-weighted mean leaf depth plus one addition.
    `trees`: (leaf depths, leaf covers) per tree; `splits` = leaves − 1 in a binary tree."""
    params, flops = outputs, 0.0
    for depths, cover in trees:
        params += 2 * (len(depths) - 1) + len(depths)
        flops += float(np.average(depths, weights=cover if cover.sum() > 0 else None)) + 1
    return float(params), flops


def _leaf_depths(left: np.ndarray, right: np.ndarray, cover: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    depth = np.zeros(len(left), dtype=np.int64)
    for node in range(len(left)):  # children come after their parent in both libraries' node order
        if left[node] >= 0:
            depth[left[node]] = depth[right[node]] = depth[node] + 1
    leaf = left < 0
    return depth[leaf].astype(np.float64), cover[leaf].astype(np.float64)


class XGBoostFile(TeacherFile):
    format = "XGBoost model"
    categories_as = "category"  # XGBoost ≥ 3.1 stores the training categories and re-codes by value

    def __init__(self, path: Path):
        super().__init__(path)
        _need("xgboost", path.name, "boosters")
        import xgboost as xgb

        self.booster = xgb.Booster(model_file=str(path))
        learner = json.loads(self.booster.save_config())["learner"]
        objective = learner["objective"]["name"]
        self.kind = f"objective {objective!r}"
        self.regression = objective in ("reg:squarederror", "reg:absoluteerror", "reg:pseudohubererror")
        if not self.regression and not objective.startswith(("binary:logistic", "binary:logitraw", "multi:")):
            raise DataError(f"teacher.path={path.name}: an XGBoost model with objective {objective!r} is neither a "
                            "probabilistic classifier (binary:logistic, multi:softprob) nor a regressor of the "
                            "target's values (reg:squarederror, reg:absoluteerror, reg:pseudohubererror)")
        num_class = int(learner["learner_model_param"]["num_class"])
        self.n_classes = 1 if self.regression else 2 if num_class == 0 else num_class
        self.n_features = self.booster.num_features()
        if self.booster.feature_names:
            self.feature_names = tuple(self.booster.feature_names)
            types = self.booster.feature_types or ["float"] * len(self.feature_names)
            self.categorical = tuple(n for n, t in zip(self.feature_names, types) if t == "c")

    def prepare(self, frame):
        import xgboost as xgb

        if self.feature_names is None:
            return xgb.DMatrix(frame.to_numpy(np.float64))
        return xgb.DMatrix(frame, enable_categorical=True)

    def logits(self, prepared):
        self.booster.set_param({"nthread": _threads()})
        if self.regression:
            return predictions(self.booster.predict(prepared))
        return binary_margins(self.booster.predict(prepared, output_margin=True))

    def counts(self):
        model = json.loads(bytes(self.booster.save_raw("json")))["learner"]["gradient_booster"]["model"]
        trees = [_leaf_depths(np.asarray(t["left_children"]), np.asarray(t["right_children"]),
                              np.asarray(t["sum_hessian"], dtype=np.float64)) for t in model["trees"]]
        return _tree_counts(trees, 1 if self.n_classes <= 2 else self.n_classes)


class LightGBMFile(TeacherFile):
    format = "LightGBM model"
    categories_as = "category"  # LightGBM maps pandas categories by its stored `pandas_categorical`

    def __init__(self, path: Path):
        super().__init__(path)
        _need("lightgbm", path.name, "boosters")
        import lightgbm as lgb

        try:
            self.booster = lgb.Booster(model_file=str(path))
        except lgb.basic.LightGBMError as exc:
            raise DataError(f"teacher.path={path.name}: not a LightGBM model file "
                            f"({str(exc).splitlines()[0]})") from None
        self.dump = self.booster.dump_model()
        objective = str(self.dump.get("objective", ""))
        self.kind = f"objective {objective.split()[0] if objective else objective!r}"
        self.regression = objective.startswith(("regression", "huber", "fair", "quantile"))
        if not self.regression and not objective.startswith(("binary", "multiclass", "cross_entropy")):
            raise DataError(f"teacher.path={path.name}: a LightGBM model with objective {objective!r} is neither a "
                            "probabilistic classifier (binary, multiclass) nor a regressor of the target's values "
                            "(regression, regression_l1, huber, fair)")
        per_round = self.booster.num_model_per_iteration()
        self.n_classes = 1 if self.regression else 2 if per_round == 1 else per_round
        names = tuple(self.booster.feature_name())
        self.n_features = len(names)
        # Trained on a NumPy array, LightGBM names the columns Column_0, Column_1, …: no names recorded.
        if not all(re.fullmatch(r"Column_\d+", n) for n in names):
            self.feature_names = names
            # The model file's parameters list the categorical columns by index ("[categorical_feature: 2,3]").
            listed = re.search(r"^\[categorical_feature: ([\d,]*)\]", self.booster.model_to_string(), re.M)
            indices = {int(i) for i in listed.group(1).split(",") if i} if listed else set()
            self.categorical = tuple(n for i, n in enumerate(names) if i in indices)

    def prepare(self, frame):
        return frame if self.feature_names is not None else frame.to_numpy(np.float64)

    def logits(self, prepared):
        if self.regression:
            return predictions(self.booster.predict(prepared, num_threads=_threads()))
        return binary_margins(self.booster.predict(prepared, raw_score=True, num_threads=_threads()))

    def counts(self):
        trees = []
        for info in self.dump["tree_info"]:
            leaves, stack = [], [(info["tree_structure"], 0)]
            while stack:
                node, depth = stack.pop()
                if "split_index" in node:
                    stack += [(node["left_child"], depth + 1), (node["right_child"], depth + 1)]
                else:
                    leaves.append((depth, node.get("leaf_count", 0)))
            trees.append((np.array([d for d, _ in leaves], float), np.array([c for _, c in leaves], float)))
        return _tree_counts(trees, self.booster.num_model_per_iteration())


class CatBoostFile(TeacherFile):
    format = "CatBoost model"

    def __init__(self, path: Path):
        super().__init__(path)
        _need("catboost", path.name, "boosters")
        import catboost

        self.model = catboost.CatBoostClassifier()
        try:
            self.model.load_model(str(path), format="cbm")
        except catboost.CatBoostError as exc:
            raise DataError(f"teacher.path={path.name}: not a CatBoost model file "
                            f"({str(exc).splitlines()[0]})") from None
        loss = str(self.model.get_all_params().get("loss_function", ""))
        self.kind = f"loss {loss!r}"
        self.regression = loss in ("RMSE", "MAE", "Huber", "Lq", "Quantile", "Expectile")
        if not self.regression and loss not in ("Logloss", "CrossEntropy", "MultiClass", "MultiClassOneVsAll"):
            raise DataError(f"teacher.path={path.name}: a CatBoost model with loss {loss!r} is neither a classifier "
                            "nor a regressor of the target's values (RMSE, MAE, Huber, Quantile)")
        self.feature_names = tuple(self.model.feature_names_)
        self.n_features = len(self.feature_names)
        cat = set(self.model.get_cat_feature_indices())
        self.categorical = tuple(n for i, n in enumerate(self.feature_names) if i in cat)
        classes = None if self.regression else getattr(self.model, "classes_", None)
        self.n_classes = 1 if self.regression else 2 if loss in ("Logloss", "CrossEntropy") else len(classes)
        if classes is not None and len(classes) == self.n_classes:
            self.classes = tuple(str(c) for c in classes)

    def prepare(self, frame):
        import catboost

        frame = frame.copy()
        for c in self.categorical:  # CatBoost refuses NaN in a categorical column: missing is ""
            frame[c] = frame[c].where(frame[c].notna(), "").astype(str)
        return catboost.Pool(frame, cat_features=list(self.categorical))

    def logits(self, prepared):
        raw = self.model.predict(prepared, prediction_type="RawFormulaVal", thread_count=_threads())
        return predictions(raw) if self.regression else binary_margins(raw)

    def counts(self):
        depths = self.model.get_tree_leaf_counts()
        outputs = 1 if self.n_classes <= 2 else self.n_classes
        # A symmetric tree stores each level's split once (as kdx's CatBoost teacher counts it).
        params = outputs + sum(2 * int(np.log2(n)) + n * outputs for n in depths)
        return float(params), float(sum(np.log2(n) + 1 for n in depths))


def _estimator_values(obj, seen: set[int]) -> int:
    """Learned values of a fitted scikit-learn object: numeric arrays in its fitted attributes (name_), tree
    nodes as kdx counts them, recursing into pipelines, ensembles and wrapped boosters."""
    from sklearn.base import BaseEstimator
    from sklearn.tree._tree import Tree as SkTree

    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        return int(obj.size) if obj.dtype.kind in "fiub" else 0
    if isinstance(obj, SkTree):
        leaves = int((obj.children_left == -1).sum())
        return 2 * (obj.node_count - leaves) + leaves * int(np.prod(obj.value.shape[1:]))
    if isinstance(obj, (list, tuple)):
        return sum(_estimator_values(o, seen) for o in obj)
    if isinstance(obj, dict):
        return sum(_estimator_values(o, seen) for o in obj.values())
    if hasattr(obj, "nodes") and hasattr(obj.nodes, "dtype") and "is_leaf" in (obj.nodes.dtype.names or ()):
        leaves = int(obj.nodes["is_leaf"].sum())  # a HistGradientBoosting tree
        return 2 * (len(obj.nodes) - leaves) + leaves
    if isinstance(obj, BaseEstimator):
        fitted = {k: v for k, v in vars(obj).items() if k.endswith("_") and not k.startswith("__")}
        parts = [fitted.pop("_predictors", None), getattr(obj, "steps", None)]
        return sum(_estimator_values(v, seen) for v in [*fitted.values(), *parts] if v is not None)
    return 0


class SklearnFile(TeacherFile):
    """A fitted scikit-learn classifier or Pipeline (anything with predict_proba and classes_), or a regressor
    (scikit-learn's `is_regressor`: its `predict` is the prediction)."""

    def _adopt(self, model) -> None:
        from sklearn.base import is_regressor

        self.kind = f"a {type(model).__name__}"
        self.regression = bool(is_regressor(model)) and hasattr(model, "predict")
        if not self.regression and not (hasattr(model, "predict_proba") and hasattr(model, "classes_")):
            raise DataError(f"teacher.path={self.path.name}: the file holds a {type(model).__name__}, neither a fitted "
                            "classifier with predict_proba nor a regressor (save the fitted estimator or Pipeline)")
        self.model = model
        if not self.regression:
            self.classes = tuple(str(c) for c in model.classes_)
        self.n_classes = 1 if self.regression else len(self.classes)
        names = getattr(model, "feature_names_in_", None)
        self.feature_names = None if names is None else tuple(str(n) for n in names)
        self.n_features = getattr(model, "n_features_in_", None)

    def prepare(self, frame):
        return frame if self.feature_names is not None else frame.to_numpy()

    def logits(self, prepared):
        if self.regression:
            return predictions(self.model.predict(prepared))
        return log_probabilities(self.model.predict_proba(prepared))

    def counts(self):
        return float(_estimator_values(self.model, set())), float("nan")


# Types skops 0.16 does not trust by default that hold data, not code: a fitted OneHotEncoder stores its
# output dtype as a numpy.dtype. Anything else must be listed by the user (teacher.trusted_types).
SKOPS_DATA_TYPES = ("numpy.dtype",)


class SkopsFile(SklearnFile):
    format = "scikit-learn model (skops)"

    def __init__(self, path: Path, trusted_types: tuple[str, ...] = ()):
        super().__init__(path)
        _need("skops", path.name, "deploy")
        import skops.io as sio

        try:
            untrusted = sio.get_untrusted_types(file=str(path))
        except Exception as exc:  # noqa: BLE001 — skops raises many types for a damaged archive
            raise DataError(f"teacher.path={path.name}: not a readable skops file ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else 'corrupt archive'})") from None
        refused = [t for t in untrusted if t not in trusted_types and t not in SKOPS_DATA_TYPES]
        if refused:
            raise DataError(f"teacher.path={path.name}: the skops file contains types skops does not trust: "
                            f"{refused}; if you trust this file, list them under teacher.trusted_types")
        self._adopt(sio.load(str(path), trusted=list(untrusted)))


class PickleFile(SklearnFile):
    format = "pickle / joblib"

    def __init__(self, path: Path):
        super().__init__(path)
        import joblib

        try:
            model = joblib.load(path)
        except Exception as exc:  # noqa: BLE001 — unpickling can raise anything
            raise DataError(f"teacher.path={path.name}: cannot unpickle ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else 'corrupt file'})") from None
        self._adopt(model)


class OnnxFile(TeacherFile):
    """An ONNX classifier over raw columns: one input per feature named after it ([rows, 1], string for a
    categorical, a float type for a numeric feature; kdx export's convention), or a single numeric matrix
    [rows, features] in the dataset's column order. Its probabilities: the output holding a [rows, C] float
    tensor or a ZipMap (whose keys are the classes). A regressor — metadata task=regression (kdx export's), or
    a graph whose only output is one float value per row ([rows] or [rows, 1], e.g. skl2onnx's `variable`) —
    gives its predictions from that output."""

    format = "ONNX model"

    def __init__(self, path: Path):
        super().__init__(path)
        _need("onnxruntime", path.name, "deploy")
        import onnx
        import onnxruntime as ort

        try:
            model = onnx.load(str(path))
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            options.log_severity_level = 3
            self.session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 — onnx/onnxruntime raise their own types
            raise DataError(f"teacher.path={path.name}: not a loadable ONNX model ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0][:200]})") from None
        self.values = sum(int(np.prod(t.dims)) for t in model.graph.initializer) + sum(
            len(a.floats) + len(a.ints) for node in model.graph.node for a in node.attribute)
        inputs = self.session.get_inputs()
        first = inputs[0]
        # One float input that is not a single [rows, 1] column: the whole row as a matrix.
        self.matrix = len(inputs) == 1 and first.type in ("tensor(float)", "tensor(double)") and not (
            len(first.shape) == 2 and first.shape[1] == 1)
        if self.matrix:
            width = first.shape[1] if len(first.shape) == 2 else None
            self.n_features = width if isinstance(width, int) else None
        else:
            self.feature_names = tuple(i.name for i in inputs)
            self.n_features = len(inputs)
            self.categorical = tuple(i.name for i in inputs if i.type == "tensor(string)")
            self.types = {i.name: i.type for i in inputs}
        props = {p.key: p.value for p in model.metadata_props}
        outs = self.session.get_outputs()
        single = len(outs) == 1 and outs[0].type in ("tensor(float)", "tensor(double)") and (
            len(outs[0].shape) == 1 or (len(outs[0].shape) == 2 and outs[0].shape[1] == 1))
        self.regression = props.get("task") == "regression" or (single and "prob" not in outs[0].name.lower())
        self.kind = "a regressor" if self.regression else "a classifier"
        if self.regression:
            self.output, self.zipmap, self.n_classes = outs[0].name, False, 1
            return
        self.output, self.zipmap = self._probabilities_output()
        labels = self._class_labels(model)
        if labels is not None:
            self.classes = labels
            self.n_classes = len(labels)

    def _probabilities_output(self) -> tuple[str, bool]:
        outs = self.session.get_outputs()
        for o in outs:
            if o.type.startswith("seq(map("):
                return o.name, True
        tensors = [o for o in outs if o.type in ("tensor(float)", "tensor(double)") and len(o.shape) == 2]
        named = [o for o in tensors if "prob" in o.name.lower()]
        if not (named or tensors):
            raise DataError(f"teacher.path={self.path.name}: no output holds class probabilities (a [rows, classes] "
                            "float tensor or a ZipMap)")
        return (named or tensors)[0].name, False

    def _class_labels(self, model) -> tuple[str, ...] | None:
        """The classes in output order: a `classes` metadata entry (kdx export writes one), else the labels
        of the graph's classifier operator (skl2onnx), else unknown (0..C-1 = the dataset's order)."""
        for prop in model.metadata_props:
            if prop.key == "classes":
                try:
                    return tuple(str(c) for c in json.loads(prop.value))
                except (ValueError, TypeError):
                    break
        for node in model.graph.node:
            for a in node.attribute:
                if a.name in ("classlabels_strings", "classlabels_int64s"):
                    values = a.strings if a.name == "classlabels_strings" else a.ints
                    return tuple(v.decode() if isinstance(v, bytes) else str(v) for v in values)
        return None

    def prepare(self, frame):
        if self.matrix:
            dtype = np.float64 if self.session.get_inputs()[0].type == "tensor(double)" else np.float32
            return {self.session.get_inputs()[0].name: frame.to_numpy(dtype)}
        feed = {}
        for name in self.feature_names:
            column, kind = frame[name], self.types[name]
            if kind == "tensor(string)":
                feed[name] = column.map(lambda v: "" if pd.isna(v) else str(v)).to_numpy(object).reshape(-1, 1)
            else:
                dtype = {"tensor(double)": np.float64, "tensor(float)": np.float32}.get(kind, np.int64)
                feed[name] = column.to_numpy(np.float64).astype(dtype).reshape(-1, 1)
        return feed

    def logits(self, prepared):
        out = self.session.run([self.output], prepared)[0]
        if self.regression:
            return predictions(out)
        if self.zipmap:
            keys = list(out[0].keys()) if out else []
            if self.classes is None:
                self.classes, self.n_classes = tuple(str(k) for k in keys), len(keys)
            out = np.array([[row[k] for k in keys] for row in out])
        return log_probabilities(out)

    def counts(self):
        return float(self.values), float("nan")


READERS = {".json": XGBoostFile, ".ubj": XGBoostFile, ".txt": LightGBMFile, ".cbm": CatBoostFile,
           ".skops": SkopsFile, ".onnx": OnnxFile, ".pkl": PickleFile, ".pickle": PickleFile, ".joblib": PickleFile}
PICKLES = (".pkl", ".pickle", ".joblib")


def read_teacher_file(path: Path, allow_pickle: bool = False, trusted_types: tuple[str, ...] = ()) -> TeacherFile:
    """The reader for `path` by its extension, with the refusals a user can act on."""
    suffix = path.suffix.lower()
    if suffix not in READERS:
        raise ConfigError(f"teacher.path={path.name}: unknown model file type {suffix or '(none)'!r}; kdx reads "
                          f"{', '.join(sorted(READERS))}")
    if not path.is_file():
        raise DataError(f"teacher.path={path}: no such file")
    if suffix in PICKLES and not allow_pickle:
        raise ConfigError(f"teacher.path={path.name}: loading a pickle runs code from the file; kdx refuses it "
                          "unless you trust the file and set teacher.allow_pickle=true (or save it with skops)")
    try:
        if suffix == ".skops":
            return SkopsFile(path, tuple(trusted_types))
        return READERS[suffix](path)
    except (DataError, ConfigError, MissingExtra):
        raise
    except Exception as exc:  # noqa: BLE001 — each library raises its own type for a damaged file
        first = (str(exc).strip().splitlines() or ["corrupt file"])[0][:200]
        raise DataError(f"teacher.path={path.name}: cannot read it as a {READERS[suffix].format} "
                        f"({type(exc).__name__}: {first})") from None
