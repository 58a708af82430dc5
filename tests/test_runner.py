"""The protocol on tiny configs, called in-process through `run(cfg, out_dir)`."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import TINY

import kdx
from kdx.distill.objectives.base import TeacherSignals
from kdx.distill.objectives.hinton import Hinton
from kdx.errors import DataError
from kdx.models import MLPClassifier
from kdx.run.evaluate import evaluate_run
from kdx.run.protocol import run
from kdx.store.persist import MODELS


@pytest.fixture(scope="module")
def bc_run(tmp_path_factory):
    from conftest import make_config

    cfg = make_config("experiment=breast_cancer", "seeds=[0,1]", "limits.epochs=20", "limits.n_estimators=20",
                      "device=cpu")
    return run(cfg, tmp_path_factory.mktemp("bc"))


def test_outputs_contract(bc_run):
    m = pd.read_csv(bc_run.out_dir / "metrics.csv")
    assert list(m[["seed", "model"]].itertuples(index=False, name=None)) == [
        (s, name) for s in (0, 1) for name in MODELS]
    for col in ("accuracy", "ece", "nll", "macro_f1", "train_seconds"):
        assert m[col].notna().all()
    summary = json.loads((bc_run.out_dir / "summary.json").read_text())
    assert summary["complete"] and summary["seeds"] == [0, 1]
    acc = summary["metrics"]["student_kd"]["accuracy"]
    assert acc["mean"] == pytest.approx(m[m.model == "student_kd"].accuracy.mean())
    assert acc["sd"] == pytest.approx(m[m.model == "student_kd"].accuracy.std(ddof=1))
    assert set(summary["accuracy_retention"]) == {"student_kd", "student_nokd"}
    assert summary["config"]["teacher"]["name"] == "gbt" and "torch" in summary["versions"]
    # 569 rows split per class by largest remainder: 148/32/32 malignant + 250/54/53 benign.
    assert summary["split_sizes"]["0"] == {"train": 398, "val": 86, "test": 85}
    for seed in (0, 1):
        files = {p.name for p in (bc_run.out_dir / "checkpoints" / f"seed_{seed}").iterdir()}
        assert {"teacher.joblib", "student_nokd.pt", "student_kd.pt", "preprocessor.joblib", "split.npz"} <= files


def test_models_learn_breast_cancer(bc_run):
    m = bc_run.metrics
    assert (m.accuracy > 0.9).all(), m


def test_load_run_predicts_on_raw_rows(bc_run):
    from kdx.data import load_breast_cancer

    loaded = kdx.load_run(bc_run.out_dir)
    data = load_breast_cancer()
    test = loaded.split(0).test
    proba = loaded.predict_proba(data.X.iloc[test], model="student_kd", seed=0)
    assert proba.shape == (len(test), 2) and np.allclose(proba.sum(1), 1)
    acc = (proba.argmax(1) == data.y[test]).mean()
    recorded = bc_run.metrics.query("seed == 0 and model == 'student_kd'").accuracy.item()
    assert acc == pytest.approx(recorded, abs=0)
    assert set(loaded.predict(data.X.iloc[:5], model="teacher")) <= {"malignant", "benign"}


def test_eval_reproduces_recorded_metrics(bc_run):
    report = evaluate_run(bc_run.out_dir)
    assert len(report["rows"]) == 6 and report["complete"]
    assert report["max_abs_diff"] <= 1e-9 and all(r["split_reproduced"] for r in report["rows"])


def test_same_config_same_metrics(tmp_path, compose_cfg):
    cfg = compose_cfg(*TINY, "dataset=wine_quality", "teacher=mlp4", "student=mlp1", "cache.enabled=false")
    a = run(cfg, tmp_path / "a").metrics
    b = run(cfg, tmp_path / "b").metrics
    cols = ["accuracy", "ece", "nll", "macro_f1", "val_accuracy", "epochs_run"]
    pd.testing.assert_frame_equal(a[cols], b[cols])


def test_kd_and_nokd_students_share_init_and_order(tmp_path):
    """With alpha=1 the 'KD' student is the baseline: same init, order and budget give identical weights."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 6)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    teacher_logits = rng.normal(size=(200, 2)).astype(np.float32)
    a = MLPClassifier(hidden=(8,), epochs=5, seed=3).fit(X, y, X[:40], y[:40], 2)
    signals = TeacherSignals({"teacher_logits": teacher_logits})
    b = MLPClassifier(hidden=(8,), epochs=5, seed=3).fit(X, y, X[:40], y[:40], 2, Hinton(3, 1.0), signals)
    c = MLPClassifier(hidden=(8,), epochs=5, seed=3).fit(X, y, X[:40], y[:40], 2, Hinton(3, 0.5), signals)
    assert np.array_equal(a.logits(X), b.logits(X))
    assert not np.array_equal(a.logits(X), c.logits(X))


def test_rare_class_in_csv_is_a_clear_error(tmp_path, compose_cfg):
    path = tmp_path / "rare.csv"
    labels = ["a"] * 60 + ["b"] * 60 + ["c"] * 2
    pd.DataFrame({"x": np.arange(122.0), "y": labels}).to_csv(path, index=False)
    cfg = compose_cfg("dataset=csv", f"dataset.path={path}", "dataset.target=y", "seeds=[0]")
    with pytest.raises(DataError, match="'c' has only 2 row"):
        run(cfg, tmp_path / "out")
    assert not (tmp_path / "out" / "summary.json").exists()


def test_repeated_cv_run_with_shared_student_latency_and_corrected_stats(tmp_path, compose_cfg):
    cfg = compose_cfg("experiment=wine_quality", "+smoke=on", "seeds=[0]", "split.scheme=repeated_cv",
                      "split.folds=3", "limits.rows=600", "explain.rows=20")
    result = run(cfg, tmp_path)
    m = result.metrics
    assert sorted(m.seed.unique()) == [0, 1, 2]  # one unit per fold: seed·folds + fold
    tests = [np.load(tmp_path / "checkpoints" / f"seed_{u}" / "split.npz")["test"] for u in range(3)]
    assert len(np.unique(np.concatenate(tests))) == sum(map(len, tests)) >= 600  # each row tested once
    summary = result.summary
    sizes = summary["split_sizes"]
    ratio = np.mean([sizes[u]["test"] / sizes[u]["train"] for u in sizes])
    assert summary["stats"]["test_train_ratio"] == pytest.approx(ratio) and summary["split"]["scheme"] == "repeated_cv"
    row = result.comparisons.query("metric == 'accuracy' and a == 'student_nokd'").iloc[0]
    assert row.variance_factor == pytest.approx(1 / 3 + ratio)  # Bouckaert–Frank: 1/(r·k) + n_test/n_train
    # The KD student has the no-KD student's architecture: one latency measurement serves both.
    kd, nokd = m[m.model == "student_kd"].reset_index(), m[m.model == "student_nokd"].reset_index()
    assert (kd.latency_ms == nokd.latency_ms).all() and (kd.profiled_as == "student_nokd").all()
    assert (m.flops > 0).all()
    assert evaluate_run(tmp_path)["max_abs_diff"] < 1e-9  # kdx eval re-derives the CV splits
