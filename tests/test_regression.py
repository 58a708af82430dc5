"""Regression: the task read from the data, the quantile-stratified split, every family fitting a number, the
distillation form α·y + (1−α)·ŷ_T, the metrics against scikit-learn, the refusals, the ONNX regressor and a run
end to end (report, eval, export, load_run)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import make_config
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

import kdx
from kdx.data import TabularData, load_diabetes, load_wine_quality
from kdx.data.base import regression_strata
from kdx.data.loaders import load_adult, load_csv
from kdx.data.rows import prepare_seed
from kdx.distill.objectives.hinton import Hinton
from kdx.errors import ConfigError, DataError
from kdx.measure.metrics import regression_fidelity, scores, teacher_fit
from kdx.models import MLPClassifier
from kdx.models.gbt import GBTClassifier
from kdx.models.losses import Loss, OneStudentLoss, regression_kd_loss
from kdx.models.soft_targets import regression_targets
from kdx.models.tree import TreeClassifier
from kdx.run.building import build_objective
from kdx.run.evaluate import evaluate_run
from kdx.run.protocol import run

SPLIT = {"scheme": "holdout", "fractions": (0.7, 0.15, 0.15), "folds": 5}


def csv_with_target(tmp_path, target) -> str:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=len(target)), "b": rng.choice(["x", "y"], len(target)), "t": target})
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    return str(path)


# ---- the task ---------------------------------------------------------------------------------------------------

def test_auto_reads_a_continuous_target_as_a_regression_and_says_so(tmp_path, caplog):
    target = np.random.default_rng(1).normal(50, 10, 300)
    with caplog.at_level(logging.INFO, logger="kdx"):
        data = load_csv(csv_with_target(tmp_path, target), "t")
    assert data.regression and data.n_classes == 1 and data.class_names == ("t",)
    np.testing.assert_array_equal(data.y, pd.read_csv(tmp_path / "t.csv")["t"].to_numpy())
    assert "300 distinct numeric values (not whole numbers): predicted as a number, a regression" in caplog.text


def test_few_integer_values_stay_classes_unless_the_user_says_regression(tmp_path, caplog):
    path = csv_with_target(tmp_path, np.tile([3, 4, 5, 6, 7], 60))
    with caplog.at_level(logging.INFO, logger="kdx"):
        data = load_csv(path, "t")
    assert not data.regression and data.n_classes == 5
    assert "dataset.task=regression to predict it as a number" in caplog.text
    numbers = load_csv(path, "t", task="regression")
    assert numbers.regression and numbers.y.dtype == np.float64 and set(numbers.y) == {3.0, 4.0, 5.0, 6.0, 7.0}


@pytest.mark.parametrize("target,task,needle", [
    (np.random.default_rng(2).normal(size=300), "classification", "dataset.task=regression"),
    (np.where(np.arange(300) % 2, "yes", "no"), "regression", "holds text (e.g."),
    (np.where(np.arange(300) == 7, np.nan, 1.5 + np.arange(300)), "regression", "1 missing value"),
    (np.where(np.arange(300) == 7, np.inf, 1.5 + np.arange(300)), "regression", "1 infinite value"),
    (np.full(300, 2.5), "regression", "holds one value (2.5) in every row"),
    (np.arange(300.0), "sideways", "dataset.task must be one of auto, classification, regression"),
])
def test_bad_targets_are_one_line(tmp_path, target, task, needle):
    with pytest.raises(DataError, match=None) as err:
        load_csv(csv_with_target(tmp_path, target), "t", task=task)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_bundled_tasks(tmp_path):
    wine = load_wine_quality(task="regression")
    assert wine.regression and wine.y.min() == 3 and wine.y.max() == 9 and len(wine.y) == 6497
    assert load_wine_quality().n_classes == 7
    diabetes = load_diabetes()
    assert diabetes.regression and diabetes.X.shape == (442, 10) and diabetes.y.min() == 25
    with pytest.raises(DataError, match="diabetes: dataset.task=classification does not apply"):
        load_diabetes(task="classification")
    with pytest.raises(DataError, match="adult: dataset.task=regression does not apply"):
        load_adult(task="regression")


# ---- the split and the target's scale ----------------------------------------------------------------------------

def test_split_is_stratified_on_quantiles_and_reproducible():
    data = load_diabetes()
    strata = regression_strata(data.y)
    assert len(np.unique(strata)) == 10 and np.bincount(strata).min() >= 30
    sd = prepare_seed(data, 3, SPLIT)
    again = prepare_seed(data, 3, SPLIT)
    np.testing.assert_array_equal(sd.split.test, again.split.test)
    for part in ("train", "val", "test"):  # every part covers every decile of the target
        assert set(strata[sd.split.parts()[part]]) == set(range(10))
    # Standardized with the training rows' mean and sd, and mapped back exactly.
    train = data.y[sd.split.train]
    assert abs(float(sd.y["train"].mean())) < 1e-6 and abs(float(sd.y["train"].std()) - 1) < 1e-6
    np.testing.assert_allclose(sd.preprocessor.unscale_target(sd.y["test"]), data.y[sd.split.test], rtol=1e-6)
    assert sd.preprocessor.target_mean_ == pytest.approx(train.mean())
    cv = prepare_seed(data, 7, {**SPLIT, "scheme": "repeated_cv"})
    assert set(strata[cv.split.test]) == set(range(10))


def test_a_tiny_table_gets_one_stratum():
    assert set(regression_strata(np.arange(25.0))) == {0}


# ---- metrics ----------------------------------------------------------------------------------------------------

def test_metrics_equal_scikit_learn():
    rng = np.random.default_rng(0)
    y, pred, teacher = rng.normal(100, 20, 200), rng.normal(100, 25, 200), rng.normal(100, 22, 200)
    m = regression_fidelity(pred, y)
    assert m["r2"] == pytest.approx(r2_score(y, pred), rel=1e-12)
    assert m["rmse"] == pytest.approx(np.sqrt(mean_squared_error(y, pred)), rel=1e-12)
    assert m["mae"] == pytest.approx(mean_absolute_error(y, pred), rel=1e-12)
    t = teacher_fit(teacher, pred)
    assert t["teacher_rmse"] == pytest.approx(np.sqrt(mean_squared_error(teacher, pred)), rel=1e-12)
    assert t["teacher_r2"] == pytest.approx(r2_score(teacher, pred), rel=1e-12)
    # scores() maps standardized outputs back with the seed's preprocessing first.
    sd = prepare_seed(load_diabetes(), 0, SPLIT)
    z = sd.y["test"][:, None] * 0.5
    got = scores(z, load_diabetes().y[sd.split.test], preprocessor=sd.preprocessor)
    assert got["r2"] == pytest.approx(r2_score(load_diabetes().y[sd.split.test], sd.preprocessor.unscale_target(z)))


# ---- the distillation form ---------------------------------------------------------------------------------------

def test_regression_loss_and_the_targets_trees_fit_agree():
    """α·mean_L (f − y)² + (1−α)·mean (f − ŷ_T)² and Σ w·(f − t)² / N have the same gradient in f, with rows
    only the teacher labelled (y = NaN) and without."""
    rng = np.random.default_rng(0)
    n, alpha = 40, 0.3
    y, teacher = rng.normal(size=n), rng.normal(size=n)
    y[::4] = np.nan
    f = torch.tensor(rng.normal(size=(n, 1)), requires_grad=True)
    loss = regression_kd_loss(f, torch.tensor(teacher)[:, None], torch.tensor(y), alpha)
    (grad,) = torch.autograd.grad(loss, f)
    t, w = regression_targets(y, teacher[:, None], alpha)
    weighted = (2 * w[:, None] * (f.detach().numpy() - t)) / n
    np.testing.assert_allclose(grad.numpy(), weighted, rtol=1e-10)
    # The closed form without generated rows: t = α·y + (1−α)·ŷ_T, w = 1.
    y_full = rng.normal(size=n)
    t, w = regression_targets(y_full, teacher, alpha)
    np.testing.assert_allclose(t[:, 0], alpha * y_full + (1 - alpha) * teacher)
    np.testing.assert_array_equal(w, 1.0)
    # α = 1 is plain squared error; the one-by-one loss computes exactly regression_kd_loss.
    value = OneStudentLoss(Loss(alpha=1.0, regression=True), "cpu")(
        lambda x: x, f.detach(), torch.tensor(y_full), {}, {}, 1)
    assert float(value) == pytest.approx(float(((f.detach()[:, 0] - torch.tensor(y_full)) ** 2).mean()))


def test_objectives_refuse_what_a_regression_has_not(compose_cfg):
    assert build_objective(compose_cfg("kd=hinton").kd, regression=True).tau is None
    with pytest.raises(ConfigError, match="kd.tau=3 with a regression"):
        build_objective(compose_cfg("kd.tau=3").kd, regression=True)
    with pytest.raises(ConfigError, match="kd=dkd does not apply to a regression"):
        build_objective(compose_cfg("kd=dkd").kd, regression=True)
    with pytest.raises(ConfigError, match="kd=label_smoothing does not apply to a regression"):
        build_objective(compose_cfg("kd=label_smoothing").kd, regression=True)
    # kd.tau: null is the study's 4 on a classification (its cache keys and results unchanged).
    assert build_objective(compose_cfg().kd).settings() == {"name": "hinton", "tau": 4.0, "alpha": 0.5}


@pytest.mark.parametrize("family", ["mlp", "tree", "gbt", "xgboost", "lightgbm", "catboost", "ebm"])
def test_every_family_fits_a_number_and_kd_pulls_it_to_the_teacher(family):
    data = load_diabetes()
    sd = prepare_seed(data, 0, SPLIT)
    teacher = GBTClassifier(60, max_leaf_nodes=8).fit(sd.X["train"], sd.y["train"], sd.X["val"], sd.y["val"], 1)
    objective = Hinton(None, 0.0).for_regression()  # α = 0: the teacher's predictions only
    signals = objective.signals(teacher, sd.X["train"], sd.y["train"], 1, None, "auto")
    # Each with the capacity to follow its target closely: then fitting ŷ_T must end nearer the teacher than
    # fitting y (a heavily shrunk booster need not: it stays nearer the mean whatever it fits).
    make = {"mlp": lambda: MLPClassifier((32,), epochs=150, lr=3e-3, patience=150),
            "tree": lambda: TreeClassifier(max_depth=5, min_samples_leaf=10),
            "gbt": lambda: GBTClassifier(200, learning_rate=0.3, max_leaf_nodes=8)}
    if family not in make:
        from kdx.models import boosting

        module = {"xgboost": "xgboost", "lightgbm": "lightgbm", "catboost": "catboost", "ebm": "interpret"}[family]
        if not boosting.installed(module):
            pytest.skip(f"{module} not installed")
        from kdx.models.catboost_model import CatBoostClassifier
        from kdx.models.ebm_model import EBMClassifier
        from kdx.models.lightgbm_model import LightGBMClassifier
        from kdx.models.xgboost_model import XGBoostClassifier

        make[family] = {"xgboost": lambda: XGBoostClassifier(200, learning_rate=0.3, max_depth=4),
                        "lightgbm": lambda: LightGBMClassifier(200, learning_rate=0.3, num_leaves=8),
                        "catboost": lambda: CatBoostClassifier(200, learning_rate=0.3, depth=4),
                        "ebm": lambda: EBMClassifier(300, learning_rate=0.1, outer_bags=2, interactions=0)}[family]
    # The MLP keeps its best validation epoch: selected on the labels, both students stop within a few epochs of
    # each other (about 18 here), close to the mean; selected on closeness to the teacher (validation targets
    # = its predictions), each keeps the epoch nearest it, and only the distilled one was trained towards it.
    X_val, y_val = (sd.X["train"], signals.rows["teacher_logits"][:, 0]) if family == "mlp" else (sd.X["val"],
                                                                                                  sd.y["val"])
    nokd = make[family]().fit(sd.X["train"], sd.y["train"], X_val, y_val, 1)
    kd = make[family]().fit(sd.X["train"], sd.y["train"], X_val, y_val, 1, objective, signals)
    for model in (nokd, kd):
        out = model.logits(sd.X["test"])
        assert out.shape == (len(sd.X["test"]), 1) and np.isfinite(out).all()
    closer = [np.sqrt(np.mean((m.logits(sd.X["train"]) - teacher.logits(sd.X["train"])) ** 2)) for m in (nokd, kd)]
    assert closer[1] < closer[0], closer
    r2 = r2_score(sd.y["test"], nokd.logits(sd.X["test"])[:, 0])
    assert r2 > 0.0, r2  # better than the mean (diabetes: linear models reach about 0.45, one small tree 0.07)


# ---- a run end to end --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def diabetes_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("diabetes")
    cfg = make_config("dataset=diabetes", "seeds=[0,1,2]", "limits.epochs=8", "teacher.epochs=8",
                      "explain.rows=40", "explain.background=20", "explain.stability_rows=10",
                      "explain.stability_draws=2", "profile.repeats=5", "profile.warmup=1", "device=cpu")
    result = run(cfg, out)
    return out, result


def test_run_records_regression_metrics_that_recompute_from_the_checkpoints(diabetes_run):
    out, result = diabetes_run
    m = pd.read_csv(out / "metrics.csv")
    assert {"r2", "rmse", "mae", "val_r2", "teacher_rmse", "teacher_r2"} <= set(m.columns)
    assert "accuracy" not in m.columns and "ece" not in m.columns
    data, loaded = load_diabetes(), kdx.load_run(out)
    for seed in (0, 1):
        split = loaded.split(seed)
        rows, y = data.X.iloc[split.test], data.y[split.test]
        for name in ("teacher", "student_nokd", "student_kd"):
            pred = loaded.predict(rows, model=name, seed=seed)
            row = m[(m.seed == seed) & (m.model == name)].iloc[0]
            assert row.r2 == pytest.approx(r2_score(y, pred), abs=1e-9)
            assert row.rmse == pytest.approx(np.sqrt(mean_squared_error(y, pred)), abs=1e-7)
            assert row.mae == pytest.approx(mean_absolute_error(y, pred), abs=1e-7)
        teacher = loaded.predict(rows, model="teacher", seed=seed)
        kd = m[(m.seed == seed) & (m.model == "student_kd")].iloc[0]
        assert kd.teacher_r2 == pytest.approx(r2_score(teacher, loaded.predict(rows, seed=seed)), abs=1e-9)
        assert 0 <= m[(m.seed == seed)].onnx_parity.max() <= 1e-5
    summary = result.summary
    assert summary["dataset"]["task"] == "regression" and summary["kd"]["tau"] is None
    # The error margins are given in the target's sd: stats use them in its units.
    sd = float(np.std(data.y))
    assert summary["stats"]["margins_used"]["rmse"] == pytest.approx(0.02 * sd)
    stats = pd.read_csv(out / "stats.csv")
    assert {"r2", "rmse", "teacher_rmse"} <= set(stats.metric)
    r2 = stats[(stats.metric == "r2") & (stats.a == "student_nokd")].iloc[0]
    assert r2.direction == 1 and stats[stats.metric == "rmse"].direction.iloc[0] == -1
    with pytest.raises(DataError, match="a regression: it predicts values"):
        loaded.predict_proba(data.X.head(3))


def test_report_eval_and_export_of_a_regression(diabetes_run, tmp_path):
    from kdx.analysis.report import write_report

    out, _ = diabetes_run
    path, _ = write_report(out, figures=False)
    report = path.read_text()
    assert "| run | model | R² | RMSE | cosine | stability |" in report
    assert "KD student has a higher R² than the same student without KD" in report
    assert "not applicable: a regression has no class probabilities" in report
    assert "P = accuracy (R² for a regression)" in report
    evaluation = evaluate_run(out)
    assert evaluation["metric"] == "r2" and evaluation["max_abs_diff"] < 1e-9
    exported = kdx.load_run(out).export(seed=1, out=tmp_path / "e")
    card = json.loads((tmp_path / "e" / "model_card.json").read_text())
    assert list(card["outputs"]) == ["prediction"] and card["parity"]["max_abs_diff"] <= 1e-5
    import onnxruntime as ort

    from kdx.deploy.schema import Schema, raw_feed

    session = ort.InferenceSession(str(exported.onnx), providers=["CPUExecutionProvider"])
    loaded = kdx.load_run(out)
    rows = load_diabetes().X.iloc[loaded.split(1).test]
    (prediction,) = session.run(None, raw_feed(rows, Schema.of(loaded.preprocessor(1))))
    np.testing.assert_allclose(prediction, loaded.predict(rows, seed=1), atol=1e-5 * float(np.std(load_diabetes().y)))
    assert "`prediction` (double [rows], in the target's units)" in (tmp_path / "e" / "model_card.md").read_text()


@pytest.mark.parametrize("student", ["tree", "small_gbt", "logreg", "xgboost_small"])
def test_glass_box_students_of_a_regression_export_with_parity(student, tmp_path):
    cfg = make_config("dataset=diabetes", f"student={student}", "teacher=gbt", "seeds=[0]", "limits.epochs=5",
                      "limits.n_estimators=20", "explain.rows=30", "explain.background=20", "explain.stability_rows=5",
                      "explain.stability_draws=2", "profile.repeats=2", "profile.warmup=1", "device=cpu")
    result = run(cfg, tmp_path / "r")
    m = result.metrics
    assert m.onnx_parity.notna().all() and (m.onnx_parity <= 1e-5).all() and m.r2.notna().all()
    # Exact TreeSHAP of the prediction (trees) or a sampled game (the linear student): additive, aligned.
    assert m.cosine.iloc[1:].notna().all() and (m.additivity_error.fillna(0) < 1e-4).all()
    if student == "tree":
        rules = (tmp_path / "r" / "checkpoints" / "seed_0" / "student_kd_rules.txt").read_text()
        assert "predict progression = " in rules


def test_regression_refusals_name_what_applies(compose_cfg, tmp_path):
    for overrides, needle in ((("kd=dkd",), "kd=dkd does not apply to a regression"),
                              (("kd.tau=2",), "leave kd.tau unset"),
                              (("explain.output=centred",), "explain.output=centred needs classes")):
        cfg = compose_cfg("dataset=diabetes", "seeds=[0]", "limits.epochs=2", *overrides)
        with pytest.raises(ConfigError, match=needle):
            run(cfg, tmp_path / "-".join(overrides))


def test_wine_quality_as_a_number_is_a_different_cache_key_and_data():
    numbers, classes = load_wine_quality(task="regression"), load_wine_quality()
    from kdx.data.rows import fingerprint

    assert fingerprint(numbers) != fingerprint(classes)
    assert isinstance(numbers, TabularData) and numbers.class_counts() == {}


# ---- a teacher you already trained ---------------------------------------------------------------------------

def _regressor_file(fmt: str, folder, X: pd.DataFrame, y: np.ndarray) -> tuple[str, object]:
    """A regressor of the diabetes target trained outside kdx, saved in one of the formats kdx reads."""
    if fmt == "xgboost":
        xgb = pytest.importorskip("xgboost")
        model = xgb.XGBRegressor(n_estimators=40, max_depth=3, objective="reg:squarederror").fit(X, y)
        path = folder / "reg.json"
        model.save_model(path)
    elif fmt == "lightgbm":
        lgb = pytest.importorskip("lightgbm")
        model = lgb.LGBMRegressor(n_estimators=40, num_leaves=8, verbose=-1).fit(X, y)
        path = folder / "reg.txt"
        model.booster_.save_model(path)
    elif fmt == "catboost":
        catboost = pytest.importorskip("catboost")
        model = catboost.CatBoostRegressor(iterations=40, depth=3, verbose=False, allow_writing_files=False).fit(X, y)
        path = folder / "reg.cbm"
        model.save_model(str(path))
    else:
        sio = pytest.importorskip("skops.io")
        from sklearn.linear_model import Ridge
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        model = make_pipeline(StandardScaler(), Ridge(alpha=1.0)).fit(X, y)
        path = folder / "reg.skops"
        sio.dump(model, path)
    return str(path), model


@pytest.mark.parametrize("fmt", ["xgboost", "lightgbm", "catboost", "skops"])
def test_a_pretrained_regressor_teaches_with_its_own_predictions(fmt, tmp_path):
    data = load_diabetes()
    path, model = _regressor_file(fmt, tmp_path, data.X.iloc[:300], data.y[:300])
    cfg = make_config("dataset=diabetes", "teacher=pretrained", f"teacher.path={path}", "seeds=[0,1]",
                      "limits.epochs=4", "explain.rows=20", "explain.background=10", "explain.stability_rows=4",
                      "explain.stability_draws=2", "profile.repeats=2", "profile.warmup=1", "device=cpu")
    result = run(cfg, tmp_path / "r")
    m = result.metrics
    loaded = kdx.load_run(tmp_path / "r")
    for seed in (0, 1):
        rows = data.X.iloc[loaded.split(seed).test]
        direct = np.asarray(model.predict(rows), dtype=np.float64)
        teacher = m[(m.seed == seed) & (m.model == "teacher")].iloc[0]
        assert teacher.r2 == pytest.approx(r2_score(data.y[loaded.split(seed).test], direct), abs=1e-6)
        np.testing.assert_allclose(loaded.predict(rows, model="teacher", seed=seed), direct, rtol=1e-6, atol=1e-4)
    assert m[m.model == "student_kd"].teacher_rmse.notna().all()
    assert result.summary["teacher"]["pretrained"]


def test_kdx_exports_a_regressor_another_run_can_use_as_its_teacher(diabetes_run, tmp_path):
    out, _ = diabetes_run
    exported = kdx.load_run(out).export(seed=0, out=tmp_path / "e")
    cfg = make_config("dataset=diabetes", "teacher=pretrained", f"teacher.path={exported.onnx}", "seeds=[0]",
                      "limits.epochs=3", "explain.enabled=false", "profile.enabled=false", "device=cpu")
    m = run(cfg, tmp_path / "r").metrics
    before = pd.read_csv(out / "metrics.csv")
    # The same teacher (seed 0's KD student, exported), scored on the same seed's test rows.
    assert m[m.model == "teacher"].r2.iloc[0] == pytest.approx(
        before[(before.seed == 0) & (before.model == "student_kd")].r2.iloc[0], abs=1e-5)


def test_a_file_of_the_other_task_is_one_line(tmp_path, compose_cfg):
    data = load_diabetes()
    path, _ = _regressor_file("skops", tmp_path, data.X, data.y)
    cfg = compose_cfg("dataset=breast_cancer", "teacher=pretrained", f"teacher.path={path}", "seeds=[0]")
    with pytest.raises(DataError, match="the file holds a regressor .* but breast_cancer is a classification"):
        run(cfg, tmp_path / "a")
    sio = pytest.importorskip("skops.io")
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    classifier = tmp_path / "clf.skops"
    sio.dump(make_pipeline(StandardScaler(), LogisticRegression()).fit(data.X, data.y > 150), classifier)
    cfg = compose_cfg("dataset=diabetes", "teacher=pretrained", f"teacher.path={classifier}", "seeds=[0]")
    with pytest.raises(DataError, match="the file holds a classifier .* but diabetes is a regression"):
        run(cfg, tmp_path / "b")
    # A regressor of another target: its predictions are further from this one than the mean is.
    wrong, _ = _regressor_file("skops", tmp_path, data.X, -data.y)
    cfg = compose_cfg("dataset=diabetes", "teacher=pretrained", f"teacher.path={wrong}", "seeds=[0]")
    with pytest.raises(DataError, match="always predicting the training mean is nearer the target"):
        run(cfg, tmp_path / "c")
