"""teacher=pretrained: every file format reproduces the object that saved it, mismatches and unsafe files
are refused in one line, the feature game is the same game in raw and encoded space, and a whole run
(Python and CLI) with a saved XGBoost model, cached by the file's content."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from scipy.special import softmax

from kdx.data import load_csv
from kdx.data.raw import RawCodec
from kdx.errors import ConfigError, DataError, KdxError
from kdx.models import boosting
from kdx.models.pretrained import PretrainedTeacher

BOOSTERS = pytest.mark.skipif(not all(boosting.installed(m) for m in ("xgboost", "lightgbm", "catboost")),
                              reason="kdx[boosters] is not installed")
DEPLOY = pytest.mark.skipif(not all(boosting.installed(m) for m in ("onnxruntime", "skl2onnx", "skops")),
                            reason="kdx[deploy] is not installed")


def _table(n_classes: int = 2, n: int = 500, seed: int = 0) -> pd.DataFrame:
    """Mixed raw columns with missing values of both kinds, and a label that depends on all of them."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "age": rng.normal(40, 10, n).round(), "amount": rng.lognormal(8, 1, n),
        "city": rng.choice(["north", "south", "east"], n), "plan": rng.choice(["basic", "pro"], n),
    })
    score = (frame.age - 40) / 10 + np.log(frame.amount) - 8 + (frame.city == "north") - 0.5 * (frame.plan == "pro")
    cut = np.quantile(score, np.linspace(0, 1, n_classes + 1)[1:-1])
    frame["label"] = np.asarray(["c0", "c1", "c2"])[np.digitize(score + rng.normal(0, 0.3, n), cut)]
    frame.loc[::17, "age"] = np.nan
    frame.loc[::23, "city"] = np.nan
    return frame


@pytest.fixture(params=[2, 3], ids=["binary", "3-class"])
def table(request, tmp_path):
    frame = _table(request.param)
    path = tmp_path / "table.csv"
    frame.to_csv(path, index=False)
    data = load_csv(path, "label")
    return frame, data, path


def _features(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns="label")


def _as_categories(X: pd.DataFrame) -> pd.DataFrame:
    X = X.copy()
    for c in ("city", "plan"):
        X[c] = X[c].astype("category")
    return X


def _labels(frame: pd.DataFrame) -> np.ndarray:
    return np.searchsorted(np.unique(frame.label), frame.label)  # sorted classes = kdx's order


def _save_xgboost(frame, folder: Path, suffix: str = ".json"):
    import xgboost as xgb

    model = xgb.XGBClassifier(n_estimators=20, max_depth=3, enable_categorical=True).fit(
        _as_categories(_features(frame)), _labels(frame))
    path = folder / f"model{suffix}"
    model.save_model(path)
    return path, lambda X: model.predict_proba(_as_categories(X))


def _save_lightgbm(frame, folder: Path):
    import lightgbm as lgb

    model = lgb.LGBMClassifier(n_estimators=20, num_leaves=8, min_child_samples=5, verbose=-1).fit(
        _as_categories(_features(frame)), _labels(frame))
    path = folder / "model.txt"
    model.booster_.save_model(path)
    return path, lambda X: model.predict_proba(_as_categories(X))


def _save_catboost(frame, folder: Path):
    import catboost

    def prepared(X):
        X = X.copy()
        for c in ("city", "plan"):  # CatBoost refuses NaN categories: kdx feeds missing as ""
            X[c] = X[c].fillna("").astype(str)
        return X

    model = catboost.CatBoostClassifier(iterations=20, depth=3, verbose=False, allow_writing_files=False,
                                        cat_features=["city", "plan"]).fit(prepared(_features(frame)), frame.label)
    path = folder / "model.cbm"
    model.save_model(path)
    return path, lambda X: model.predict_proba(prepared(X))


def _pipeline(frame):
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    prep = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(), StandardScaler()), ["age", "amount"]),
        ("cat", make_pipeline(SimpleImputer(strategy="constant", fill_value="?"),
                              OneHotEncoder(handle_unknown="ignore")), ["city", "plan"]),
    ])
    return make_pipeline(prep, LogisticRegression(max_iter=500)).fit(_features(frame), frame.label)


def _save_skops(frame, folder: Path):
    import skops.io as sio

    model = _pipeline(frame)
    path = folder / "model.skops"
    sio.dump(model, path)
    return path, model.predict_proba


def _save_pickle(frame, folder: Path):
    model = _pipeline(frame)
    path = folder / "model.joblib"
    joblib.dump(model, path)
    return path, model.predict_proba


def _save_onnx_matrix(frame, folder: Path):
    """A numeric-only scikit-learn model converted by skl2onnx: one float matrix input, a ZipMap output."""
    from skl2onnx import to_onnx
    from sklearn.ensemble import RandomForestClassifier

    X = _features(frame)[["age", "amount"]].fillna(0.0)
    model = RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0).fit(X.to_numpy(np.float32),
                                                                                     frame.label)
    path = folder / "model.onnx"
    path.write_bytes(to_onnx(model, X.to_numpy(np.float32)[:1]).SerializeToString())
    return path, lambda Z: model.predict_proba(Z[["age", "amount"]].to_numpy(np.float32))


SAVERS = {"xgboost-json": _save_xgboost, "xgboost-ubj": lambda f, d: _save_xgboost(f, d, ".ubj"),
          "lightgbm": _save_lightgbm, "catboost": _save_catboost, "skops": _save_skops, "pickle": _save_pickle}


def _teacher(path: Path, data, **kwargs) -> PretrainedTeacher:
    return PretrainedTeacher(str(path), **kwargs).attach(data, RawCodec.of(data.X, data.numeric, data.categorical))


@BOOSTERS
@DEPLOY
@pytest.mark.parametrize("fmt", list(SAVERS))
def test_each_format_reproduces_the_object_that_saved_it(fmt, table, tmp_path):
    frame, data, _ = table
    path, proba = SAVERS[fmt](frame, tmp_path)
    # XGBoost and LightGBM files do not name their classes: the labels are given in output order
    unnamed = fmt.startswith(("xgboost", "lightgbm"))
    teacher = _teacher(path, data, allow_pickle=fmt == "pickle", classes=list(data.class_names) if unnamed else None)
    X = _features(frame)
    ours = softmax(teacher.logits_frame(X), axis=1)
    np.testing.assert_allclose(ours, proba(X), atol=1e-6)
    assert teacher.columns_ == ("age", "amount", "city", "plan")
    assert teacher.n_params() > 0 and teacher.size_bytes() == path.stat().st_size
    if fmt.startswith(("xgboost", "lightgbm", "catboost")):
        assert teacher.flops() > 20  # 20 trees: each at least one comparison and one addition
    # A checkpoint (kdx's own joblib) holds the file's bytes and predicts the same
    joblib.dump(teacher, tmp_path / "checkpoint.joblib")
    again = joblib.load(tmp_path / "checkpoint.joblib")
    np.testing.assert_allclose(again.logits_frame(X), teacher.logits_frame(X), atol=0)


@DEPLOY
def test_onnx_matrix_model_on_a_numeric_dataset(tmp_path):
    frame = _table(2)[["age", "amount", "label"]].fillna({"age": 40.0})
    frame.to_csv(tmp_path / "numeric.csv", index=False)
    data = load_csv(tmp_path / "numeric.csv", "label")
    path, proba = _save_onnx_matrix(frame, tmp_path)
    teacher = _teacher(path, data)
    assert teacher.file.matrix and teacher.file.classes == ("c0", "c1")
    np.testing.assert_allclose(softmax(teacher.logits_frame(frame), axis=1), proba(frame), atol=1e-5)


@DEPLOY
def test_onnx_file_from_kdx_export_reads_raw_columns(tmp_path):
    """kdx export's convention (one input per raw column, strings for categories): a model exported from a
    kdx run can be the teacher of another."""
    from kdx.data.preprocess import Preprocessor
    from kdx.deploy.runtime import export_model
    from kdx.models import MLPClassifier

    frame = _table(3)
    frame.to_csv(tmp_path / "t.csv", index=False)
    data = load_csv(tmp_path / "t.csv", "label")
    pre = Preprocessor(data.numeric, data.categorical).fit(data.X)
    X = pre.transform(data.X)
    net = MLPClassifier(hidden=[8], epochs=3, seed=0).fit(X, data.y, X, data.y, 3)
    (tmp_path / "student.onnx").write_bytes(export_model(net, pre, data.class_names))
    teacher = _teacher(tmp_path / "student.onnx", data)
    assert not teacher.file.matrix and teacher.file.classes == ("c0", "c1", "c2")
    np.testing.assert_allclose(softmax(teacher.logits_frame(data.X), axis=1), net.predict_proba(X), atol=1e-5)


def _class_order_frame(frame):
    """The same table whose labels sort the other way round: the teacher's classes must be re-ordered."""
    out = frame.copy()
    out["label"] = out.label.map({"c0": "z", "c1": "y", "c2": "x"})
    return out


@DEPLOY
def test_classes_are_matched_by_name(tmp_path):
    frame = _table(3)
    model = _pipeline(frame)  # classes c0, c1, c2
    import skops.io as sio

    sio.dump(model, tmp_path / "m.skops")
    renamed = frame.assign(label=frame.label.map({"c0": "c2", "c1": "c0", "c2": "c1"}))
    renamed.to_csv(tmp_path / "t.csv", index=False)
    data = load_csv(tmp_path / "t.csv", "label")  # same names, so matched by name whatever the order
    teacher = _teacher(tmp_path / "m.skops", data)
    p = softmax(teacher.logits_frame(_features(frame)), axis=1)
    np.testing.assert_allclose(p, model.predict_proba(_features(frame)), atol=1e-9)  # both in c0, c1, c2 order
    _class_order_frame(frame).to_csv(tmp_path / "other.csv", index=False)
    with pytest.raises(DataError, match=r"the teacher's classes \['c0', 'c1', 'c2'\] are not csv's \['x', 'y', 'z'\]"):
        _teacher(tmp_path / "m.skops", load_csv(tmp_path / "other.csv", "label"))


@BOOSTERS
def test_mismatches_are_one_line(tmp_path):
    frame = _table(2)
    for name in ("four", "five", "three"):
        (tmp_path / name).mkdir()
    four, _ = _save_xgboost(frame, tmp_path / "four")
    five, _ = _save_xgboost(frame.assign(fnlwgt=1.0), tmp_path / "five")  # a column the data lacks
    three, _ = _save_xgboost(_table(3), tmp_path / "three")
    frame.to_csv(tmp_path / "t.csv", index=False)
    data = load_csv(tmp_path / "t.csv", "label")
    with pytest.raises(DataError, match=r"the teacher expects 5 features, csv has 4: missing 'fnlwgt'$"):
        _teacher(five, data)
    with pytest.raises(DataError, match="the teacher has 3 classes, csv has 2"):
        _teacher(three, data)
    recoded = frame.assign(plan=(frame.plan == "pro").astype(float))  # a category the data has as a number
    recoded.to_csv(tmp_path / "r.csv", index=False)
    with pytest.raises(DataError, match="the teacher reads 'plan' as categorical, csv has it as numeric"):
        _teacher(four, load_csv(tmp_path / "r.csv", "label"), classes=["c0", "c1"])
    # Without column names and with categorical data, kdx cannot tell which column is which
    import xgboost as xgb

    numeric = xgb.XGBClassifier(n_estimators=3).fit(np.zeros((20, 4)), np.arange(20) % 2)
    numeric.save_model(tmp_path / "unnamed.json")
    with pytest.raises(DataError, match="records no column names and csv has categorical column"):
        _teacher(tmp_path / "unnamed.json", data)


@DEPLOY
def test_unsafe_and_unreadable_files_are_refused(tmp_path):
    frame = _table(2)
    path, _ = _save_pickle(frame, tmp_path)
    frame.to_csv(tmp_path / "t.csv", index=False)
    data = load_csv(tmp_path / "t.csv", "label")
    with pytest.raises(ConfigError, match="loading a pickle runs code from the file; .* teacher.allow_pickle=true"):
        _teacher(path, data)
    # A skops file holding a type skops does not trust by default: named, and trusted only when listed
    import skops.io as sio
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    model = make_pipeline(FunctionTransformer(np.asarray), _pipeline(frame)[-1])
    model.fit(pd.get_dummies(_features(frame)).fillna(0).to_numpy(float)[:, :2], frame.label)
    sio.dump(model, tmp_path / "custom.skops")
    untrusted = sio.get_untrusted_types(file=tmp_path / "custom.skops")
    assert untrusted
    with pytest.raises(DataError, match=r"contains types skops does not trust: \[.*numpy.*\]; if you trust"):
        PretrainedTeacher(str(tmp_path / "custom.skops"))
    assert PretrainedTeacher(str(tmp_path / "custom.skops"), trusted_types=untrusted).file.n_classes == 2
    for suffix, fmt in ((".json", "XGBoost"), (".txt", "LightGBM"), (".cbm", "CatBoost"), (".skops", "skops"),
                        (".onnx", "ONNX"), (".ubj", "XGBoost")):
        bad = tmp_path / f"corrupt{suffix}"
        bad.write_bytes(b"\x00\x01not a model\xff" * 10)
        with pytest.raises(DataError, match=r"^teacher.path=corrupt\.\w+: .*") as info:
            PretrainedTeacher(str(bad))
        assert "\n" not in str(info.value), (fmt, str(info.value))
    with pytest.raises(ConfigError, match=r"unknown model file type '.h5'; kdx reads .cbm, .joblib, .json"):
        PretrainedTeacher(str(tmp_path / "model.h5"))
    with pytest.raises(DataError, match="no such file"):
        PretrainedTeacher(str(tmp_path / "absent.json"))
    with pytest.raises(ConfigError, match="teacher=pretrained needs teacher.path=FILE"):
        PretrainedTeacher(None)


def test_the_feature_game_is_the_same_in_raw_and_encoded_space(tmp_path):
    """A model that reads raw rows, explained on raw rows mixed feature by feature, gets exactly the
    attributions the same model gets on encoded rows mixed one-hot block by block; and the grouped
    estimators equal the Shapley values of the feature game computed by brute force."""
    from itertools import combinations
    from math import factorial

    from kdx.data.preprocess import Preprocessor
    from kdx.measure.explain import attributions, output_matrix
    from kdx.models import MLPClassifier

    frame = _table(3, n=300)
    frame.to_csv(tmp_path / "t.csv", index=False)
    data = load_csv(tmp_path / "t.csv", "label")
    pre = Preprocessor(data.numeric, data.categorical).fit(data.X)
    X = pre.transform(data.X)
    net = MLPClassifier(hidden=[8], epochs=3, seed=0).fit(X, data.y, X, data.y, 3)
    codec = RawCodec.of(data.X, data.numeric, data.categorical)
    codes = codec.encode(data.X)

    class RawView(MLPClassifier):  # the same network, reading raw rows through the preprocessing
        input_space = "raw"

        def raw_logits(self, rows):
            return net.logits(pre.transform(codec.frame(rows)))

    raw_model = RawView.__new__(RawView)
    A, per_class = output_matrix(3, "centred")
    rows, background = slice(0, 6), slice(100, 120)
    classes = net.predict(X[rows])
    for method in ("exact", "permutation"):
        enc, _ = attributions(net, X[rows], X[background], A, per_class, classes, seed=3, method=method,
                              features=pre.column_feature_)
        raw, name = attributions(raw_model, codes[rows], codes[background], A, per_class, classes, seed=3,
                                 method=method)
        assert name.endswith("players = original features")
        np.testing.assert_allclose(raw, enc, atol=1e-5)
    # Brute force over the 4 features: v(S) = mean over background of g(x_S, b_rest)
    d = 4

    def v(i, S):
        mask = np.isin(pre.column_feature_, list(S))
        mixed = np.where(mask, X[rows][i], X[background])
        return float((net.logits(mixed) @ A[:, classes[i]]).mean())

    reference = np.zeros((6, d))
    for i in range(6):
        for j in range(d):
            others = [k for k in range(d) if k != j]
            for size in range(d):
                for S in combinations(others, size):
                    w = factorial(size) * factorial(d - size - 1) / factorial(d)
                    reference[i, j] += w * (v(i, set(S) | {j}) - v(i, set(S)))
    exact, _ = attributions(net, X[rows], X[background], A, per_class, classes, method="exact",
                            features=pre.column_feature_)
    np.testing.assert_allclose(exact, reference, atol=1e-5)


@BOOSTERS
def test_run_with_a_saved_xgboost_teacher(tmp_path, compose_cfg):
    from kdx.run.protocol import run

    frame = _table(2, n=600)
    frame.to_csv(tmp_path / "t.csv", index=False)
    path, proba = _save_xgboost(frame, tmp_path)
    args = ("dataset=csv", f"dataset.path={tmp_path / 't.csv'}", "dataset.target=label", "teacher=pretrained",
            f"teacher.path={path}", "student=tree", "teacher.classes=[c0,c1]", "+smoke=on", "limits.rows=null",
            "explain.rows=20", "explain.background=10", "explain.permutations=2", "profile.repeats=5",
            "save_checkpoints=true")
    result = run(compose_cfg(*args), tmp_path / "run")
    m = result.metrics.set_index(["seed", "model"])
    summary = result.summary
    assert summary["explain"]["players_resolved"] == "features"
    assert summary["teacher"]["sha256"] and summary["teacher"]["format"] == "XGBoost model"
    # Its test metrics are those of the saved model on each seed's test rows: not retrained
    from kdx.run.loading import load_run

    loaded = load_run(tmp_path / "run")
    split = loaded.split(0)
    data = load_csv(tmp_path / "t.csv", "label")
    rows = data.X.iloc[split.test]
    expected = (proba(rows).argmax(1) == data.y[split.test]).mean()
    assert m.loc[(0, "teacher"), "accuracy"] == pytest.approx(expected)
    np.testing.assert_allclose(loaded.predict_proba(rows, "teacher", 0), proba(rows), atol=1e-6)
    assert m.xs("teacher", level="model").explainer.str.endswith("players = original features").all()
    from kdx.run.evaluate import evaluate_run

    assert evaluate_run(tmp_path / "run")["max_abs_diff"] < 1e-9  # its checkpoint reproduces its test metrics
    if boosting.installed("onnxruntime"):  # kdx exports the models it trains, not the user's
        with pytest.raises(KdxError, match="no ONNX exporter for PretrainedTeacher models"):
            loaded.export(seed=0, model="teacher", out=tmp_path / "export")
    assert m.additivity_error.max() < 1e-6 and m.loc[(0, "student_kd"), "cosine"] > -1
    assert not any(c.startswith("ort_") and pd.notna(v) for c, v in m.loc[(0, "teacher")].items())
    with np.load(tmp_path / "run" / "attributions" / "seed_0.npz") as z:
        assert str(z["players"]) == "features" and z["teacher"].shape[1] == 4
    # The cache keys the teacher by content: the same file elsewhere reuses the students; a changed one does not
    copy = tmp_path / "elsewhere" / "same.json"
    copy.parent.mkdir()
    shutil.copy(path, copy)
    again = run(compose_cfg(*args[:4], f"teacher.path={copy}", *args[5:]), tmp_path / "run2")
    assert again.metrics.set_index("model").loc["student_kd", "reused"].all()
    _save_xgboost(frame.assign(label=frame.label[::-1].to_numpy()), copy.parent)  # a different model
    changed = run(compose_cfg(*args[:4], f"teacher.path={copy.parent / 'model.json'}", *args[5:]), tmp_path / "run3")
    assert not changed.metrics.set_index("model").loc["student_kd", "reused"].any()


@DEPLOY
def test_run_with_a_skops_pipeline_teacher_without_an_operation_count(tmp_path, compose_cfg):
    """scikit-learn has no operation count: J's cost uses the parameters only, for every row alike."""
    from kdx.analysis.report import write_report
    from kdx.run.protocol import run

    frame = _table(3)
    frame.to_csv(tmp_path / "t.csv", index=False)
    path, _ = _save_skops(frame, tmp_path)
    result = run(compose_cfg("dataset=csv", f"dataset.path={tmp_path / 't.csv'}", "dataset.target=label",
                             "teacher=pretrained", f"teacher.path={path}", "student=logreg", "+smoke=on",
                             "explain.rows=10", "explain.background=8", "explain.permutations=2"), tmp_path / "run")
    assert result.summary["objective"]["cost_used"] == ["params"]
    assert result.metrics.loc[result.metrics.model == "teacher", "flops"].isna().all()
    assert np.isfinite(pd.read_csv(tmp_path / "run" / "objective.csv").filter(like="J_").to_numpy()).all()
    report = write_report(tmp_path / "run", figures=False)[0].read_text()
    assert "**Pretrained teacher**" in report and "players are the **original features**" in report


def test_attribution_files_name_the_features_in_the_order_of_their_values(tmp_path, compose_cfg, tiny_csv):
    """Grouped attributions follow the preprocessing's order (numeric, then categorical), which differs from
    the CSV's column order when the kinds interleave (Adult's do): the file must name them in that order."""
    import joblib as jl

    from kdx.run.protocol import run

    run(compose_cfg("dataset=csv", f"dataset.path={tiny_csv}", "dataset.target=label", "dataset.drop=[id]",
                    "+smoke=on", "seeds=[0]", "profile.enabled=false"), tmp_path)
    pre = jl.load(tmp_path / "checkpoints" / "seed_0" / "preprocessor.joblib")
    with np.load(tmp_path / "attributions" / "seed_0.npz") as z:
        assert list(z["feature_names"]) == ["age", "score", "city"] == list(pre.feature_names_)
        assert str(z["players"]) == "columns" and len(z["column_names"]) == z["teacher_columns"].shape[1]


def test_kd_objectives_that_need_gradients_refuse_a_pretrained_teacher(tmp_path, compose_cfg):
    from kdx.run.protocol import run

    frame = _table(2)
    frame.to_csv(tmp_path / "t.csv", index=False)
    path, _ = _save_pickle(frame, tmp_path)
    cfg = compose_cfg("dataset=csv", f"dataset.path={tmp_path / 't.csv'}", "dataset.target=label",
                      "teacher=pretrained", f"teacher.path={path}", "teacher.allow_pickle=true", "kd=jacobian",
                      "+smoke=on")
    with pytest.raises(KdxError, match="kd=jacobian needs the teacher's input gradients; a pretrained teacher"):
        run(cfg, tmp_path / "run")


@BOOSTERS
@pytest.mark.slow
def test_cli_run_and_refusal(tmp_path):
    frame = _table(2, n=400)
    frame.to_csv(tmp_path / "t.csv", index=False)
    path, _ = _save_xgboost(frame, tmp_path)
    base = [sys.executable, "-m", "kdx", "run", "dataset=csv", f"dataset.path={tmp_path / 't.csv'}",
            "dataset.target=label", "teacher=pretrained", "teacher.classes=[c0,c1]", "student=logreg", "+smoke=on",
            "explain.rows=10",
            "explain.background=8", "explain.permutations=2"]
    ok = subprocess.run([*base, f"teacher.path={path}", f"hydra.run.dir={tmp_path / 'out'}"], capture_output=True,
                        text=True, timeout=600, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert (tmp_path / "out" / "report.md").is_file()
    _save_pickle(frame, tmp_path)
    refused = subprocess.run([*base, f"teacher.path={tmp_path / 'model.joblib'}", f"hydra.run.dir={tmp_path / 'o2'}"],
                             capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert refused.returncode == 2
    lines = [line for line in refused.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "loading a pickle runs code from the file" in lines[0], refused.stderr


def _xgb_file(X, y, path: Path) -> Path:
    import xgboost as xgb

    xgb.XGBClassifier(n_estimators=30, max_depth=3).fit(X, y).save_model(path)
    return path


def _numeric_table(labels: np.ndarray, n: int = 400, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    code = np.digitize(X.a + 0.3 * rng.normal(size=n), np.quantile(X.a, np.linspace(0, 1, len(labels) + 1)[1:-1]))
    return X, code, np.asarray(labels, dtype=object)[code]


@BOOSTERS
def test_a_file_without_class_names_is_matched_by_value_or_refused(tmp_path):
    """A booster file's outputs are positions 0..C-1: matched by value where the labels are those integers
    (never by sorted string order), refused where they are not, unless teacher.classes names them."""
    from kdx.data import TabularData

    X, code, _ = _numeric_table(range(12))
    path = _xgb_file(X, code, tmp_path / "m.json")
    # Labels 0..11 whose names sort as strings ("10" before "2"): output k must be the class whose label is k
    names = tuple(sorted(str(k) for k in range(12)))
    data = TabularData("ints", X, np.searchsorted(names, code.astype(str)), names, ("a", "b"), ())
    teacher = _teacher(path, data)
    assert teacher.output_labels_ == tuple(str(k) for k in range(12))
    predicted = np.asarray(names)[teacher.logits_frame(X).argmax(1)]
    import xgboost as xgb

    booster = xgb.XGBClassifier()
    booster.load_model(path)
    np.testing.assert_array_equal(predicted, booster.predict(X).astype(str))
    assert (predicted == code.astype(str)).mean() > 0.5
    X.assign(y=np.asarray(["no", "yes"])[code % 2]).to_csv(tmp_path / "words.csv", index=False)
    words = load_csv(tmp_path / "words.csv", "y")
    binary = _xgb_file(X, code % 2, tmp_path / "b.json")
    with pytest.raises(DataError, match=r"does not name its classes .* not the integers 0..1.*teacher.classes="):
        _teacher(binary, words)
    assert _teacher(binary, words, classes=["no", "yes"]).order_ is None
    assert list(_teacher(binary, words, classes=["yes", "no"]).order_) == [1, 0]
    with pytest.raises(DataError, match=r"teacher.classes=\['no', 'maybe'\] must list each of csv's 2 labels"):
        _teacher(binary, words, classes=["no", "maybe"])
    with pytest.raises(ConfigError, match="teacher.classes must list"):
        PretrainedTeacher(str(binary), classes="no")


@DEPLOY
def test_a_file_that_names_its_classes_cannot_be_contradicted(tmp_path):
    import skops.io as sio

    frame = _table(2)
    sio.dump(_pipeline(frame), tmp_path / "m.skops")
    frame.to_csv(tmp_path / "t.csv", index=False)
    data = load_csv(tmp_path / "t.csv", "label")
    assert _teacher(tmp_path / "m.skops", data, classes=["c0", "c1"]).order_ is None
    with pytest.raises(DataError, match=r"the file names its classes \['c0', 'c1'\].*contradicts it"):
        _teacher(tmp_path / "m.skops", data, classes=["c1", "c0"])


def _breast_cancer_files(folder: Path) -> tuple[Path, Path]:
    """The issue's case: Breast Cancer with its target written as words (0 = malignant, 1 = benign, as in
    scikit-learn), an XGBoost model trained on the 0/1 target and saved in its own format."""
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer(as_frame=True)
    table = bunch.data.assign(diagnosis=bunch.target.map({0: "malignant", 1: "benign"}))
    table.to_csv(folder / "bc.csv", index=False)
    return folder / "bc.csv", _xgb_file(bunch.data, bunch.target, folder / "teacher.json")


def _cli(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kdx", "run", *args, f"hydra.run.dir={folder / 'out'}"],
                          capture_output=True, text=True, timeout=600, cwd=folder)


@BOOSTERS
@pytest.mark.slow
def test_a_teacher_with_reversed_classes_is_never_distilled_from(tmp_path):
    """Through the real CLI with a real XGBoost file: no class names and word labels is refused; the wrong
    order given by hand is stopped by the check on validation rows; the right order runs, and the teacher
    scores what the model scores."""
    csv, model = _breast_cancer_files(tmp_path)
    base = ["dataset=csv", f"dataset.path={csv}", "dataset.target=diagnosis", "teacher=pretrained",
            f"teacher.path={model}", "student=logreg", "seeds=[0]", "profile.enabled=false", "explain.enabled=false"]
    for extra, expected in (([], "does not name its classes"),
                            (["teacher.classes=[benign,malignant]"], "classes are likely in another order")):
        refused = _cli(tmp_path, *base, *extra)
        lines = [line for line in refused.stderr.splitlines() if line.startswith("kdx: error:")]
        assert refused.returncode == 2 and len(lines) == 1 and expected in lines[0], refused.stderr[-2000:]
        assert "Traceback" not in refused.stderr
        if extra:
            assert "teacher.classes=[malignant, benign]" in lines[0]
    ok = _cli(tmp_path, *base, "teacher.classes=[malignant,benign]")
    assert ok.returncode == 0, ok.stderr[-2000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["metrics"]["teacher"]["accuracy"]["mean"] > 0.9 and summary["warnings"] == []


def test_sanity_check_against_majority_and_permutations():
    from kdx.measure.metrics import label_sanity

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    good = np.where(rng.random(300) < 0.8, y, rng.integers(0, 3, 300))
    check = label_sanity(good, y, majority=0, n_classes=3)
    assert (check["mapping"] == [0, 1, 2]).all() and check["p_permuted"] == 1.0 and check["p_below_majority"] > 0.5
    rotated = (good + 1) % 3  # every class read as the next one
    check = label_sanity(rotated, y, majority=0, n_classes=3)
    assert (check["mapping"] == [2, 0, 1]).all() and check["permuted_accuracy"] == pytest.approx((good == y).mean())
    assert check["p_permuted"] < 1e-10
    constant_wrong = np.full(300, 1)
    check = label_sanity(constant_wrong, np.where(rng.random(300) < 0.9, 0, 1), majority=0, n_classes=2)
    assert check["p_below_majority"] < 1e-10


def test_sanity_warnings_flag_a_teacher_below_chance_and_a_retention_above_1_5():
    from kdx.analysis.summary import sanity_warnings

    metrics = pd.DataFrame({"seed": [0, 0, 0, 1, 1, 1], "model": ["teacher", "student_nokd", "student_kd"] * 2,
                            "accuracy": [0.3, 0.9, 0.8, 0.95, 0.9, 0.91]})
    lines = sanity_warnings(metrics, {0: 0.6, 1: 0.6})
    assert len(lines) == 3 and "below chance" in lines[0] and "seed 0: 0.3000 < 0.6000" in lines[0]
    assert "student_nokd/teacher above 1.5 on 1 seed(s) (up to 3.00)" in lines[1]
    assert sanity_warnings(metrics[metrics.seed == 1], {1: 0.6}) == []


def test_a_seeds_rows_carry_their_raw_rows_and_ids_through_row_selections_only():
    """kdx.data.rows.Rows: what a raw-column teacher reads travels with the encoded rows, not by memory address."""
    import pickle

    from kdx.data.rows import Rows, contiguous

    encoded = np.arange(20, dtype=np.float32).reshape(5, 4)
    raw, ids = np.arange(10.0).reshape(5, 2) * 10, np.array([7, 3, 9, 1, 4])
    rows = Rows(encoded, raw, ids)
    for picked, index in ((rows[1:4], slice(1, 4)), (rows[[4, 0]], [4, 0]), (rows[rows.ids > 3], ids > 3),
                          (rows[2:, :], slice(2, None)), (contiguous(rows[::2]), slice(None, None, 2))):
        np.testing.assert_array_equal(picked.raw, raw[index])
        np.testing.assert_array_equal(picked.ids, ids[index])
        np.testing.assert_array_equal(np.asarray(picked), encoded[index])
    # anything computed from the values is a plain array: nothing can carry raw rows that no longer match
    for derived in (rows * 2, rows[:, :2], rows[0], rows.mean(0), np.asarray(rows), rows - rows[:1], np.exp(rows)):
        assert getattr(derived, "raw", None) is None
    assert type(pickle.loads(pickle.dumps(rows))) is np.ndarray
    with pytest.raises(ValueError, match="do not pair up"):
        Rows(encoded, raw[:4], ids)


def test_a_pretrained_teacher_refuses_encoded_rows_without_their_raw_values(tmp_path):
    """It scores the raw rows it is given and never guesses them back from an encoding (approximate)."""
    xgb = pytest.importorskip("xgboost")
    X, y = np.random.default_rng(0).normal(size=(60, 3)), np.arange(60) % 2
    path = tmp_path / "t.json"
    xgb.XGBClassifier(n_estimators=5, max_depth=2).fit(X, y).save_model(path)
    teacher = PretrainedTeacher(str(path))
    with pytest.raises(KdxError, match="without their raw values"):
        teacher.logits(X.astype(np.float32))
