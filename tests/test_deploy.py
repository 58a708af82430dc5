"""Deployable models (kdx.deploy): ONNX round trips with the preprocessing inside, parity, model cards,
onnxruntime latency in runs, and a scorer that needs nothing but onnxruntime."""

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import TINY, make_config

pytest.importorskip("onnxruntime", reason="kdx[deploy] is not installed")

from kdx import deploy  # noqa: E402
from kdx.cli import main as cli_main  # noqa: E402
from kdx.data.preprocess import Preprocessor  # noqa: E402
from kdx.deploy.runtime import DeployedModel, check_parity, export_model, parity  # noqa: E402
from kdx.deploy.schema import Schema  # noqa: E402
from kdx.errors import ExportError, MissingExtra  # noqa: E402
from kdx.run.building import build_model  # noqa: E402
from kdx.run.protocol import run  # noqa: E402


def mixed_rows(n: int, seed: int = 0, n_classes: int = 2) -> tuple[pd.DataFrame, np.ndarray]:
    """Numeric (with missing values, one always missing), text and integer-coded categorical features."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "age": rng.normal(40, 12, n), "income": rng.lognormal(10, 1, n), "never": np.nan,
        "city": rng.choice(["north", "south", "east"], n), "grade": rng.choice([1, 2, 3, 4], n),
    })
    score = (frame.age - 40) / 12 + (frame.city == "north") + 0.3 * frame.grade + rng.normal(0, 0.5, n)
    y = np.digitize(score, np.quantile(score, np.linspace(0, 1, n_classes + 1)[1:-1])).astype(np.int64)
    frame.loc[::7, "age"] = np.nan
    frame.loc[::11, "city"] = np.nan
    return frame, y


def odd_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows a deployment meets: unseen categories, empty strings, missing values everywhere, huge numbers."""
    odd = frame.iloc[:6].copy()
    odd["city"] = ["west", "", None, "north", "NORTH", "south"]
    odd["grade"] = [9, None, 2, 3, 1, 4]
    odd.loc[odd.index[:3], ["age", "income"]] = np.nan
    odd.loc[odd.index[3], "income"] = 1e9
    odd.loc[odd.index[4], "never"] = 5.0  # empty in training: ignored
    return odd


BOOSTERS = [("teacher", library, k) for library in ("xgboost", "lightgbm", "catboost") for k in (2, 3)
            if importlib.util.find_spec(library) is not None]
FAMILIES = [("student", "shallow_mlp", 2), ("student", "logreg", 3), ("student", "tree", 2), ("student", "tree", 3),
            ("student", "small_gbt", 2), ("teacher", "gbt", 3), ("teacher", "dnn", 3), *BOOSTERS]


@pytest.mark.parametrize("role,option,n_classes", FAMILIES)
def test_round_trip_each_family(role, option, n_classes):
    frame, y = mixed_rows(300, n_classes=n_classes)
    pre = Preprocessor(("age", "income", "never"), ("city", "grade")).fit(frame.iloc[:200])
    X = pre.transform(frame)
    cfg = make_config(f"{role}={option}", *TINY)
    model = build_model(role, cfg[role], 0, "cpu", cfg.limits).fit(X[:200], y[:200], X[200:250], y[200:250],
                                                                   n_classes)
    classes = [f"c{k}" for k in range(n_classes)]
    deployed = DeployedModel(export_model(model, pre, classes), Schema.of(pre))
    for rows in (frame.iloc[250:], odd_rows(frame)):
        assert parity(deployed, model, pre, rows) <= 1e-5
        assert list(deployed.predict(rows)) == [classes[k] for k in model.predict(pre.transform(rows))]
    assert check_parity(deployed, model, pre, frame.iloc[250:]) <= 1e-5


def test_a_class_the_tree_never_saw_gets_probability_zero_as_in_kdx():
    frame, y = mixed_rows(300, n_classes=3)
    y = np.where(y == 2, 1, y)  # class 2 absent from training
    pre = Preprocessor(("age", "income"), ("city",)).fit(frame)
    cfg = make_config("student=tree", *TINY)
    tree = build_model("student", cfg.student, 0, "cpu", cfg.limits).fit(pre.transform(frame), y, None, None, 3)
    assert len(tree.model_.classes_) == 2
    deployed = DeployedModel(export_model(tree, pre, ["a", "b", "c"]), Schema.of(pre))
    assert deployed.predict_proba(frame).shape == (300, 3)
    assert parity(deployed, tree, pre, frame) <= 1e-5


def test_a_perturbed_weight_fails_the_parity_check_with_its_size():
    import onnx
    from onnx import numpy_helper

    frame, y = mixed_rows(300)
    pre = Preprocessor(("age", "income"), ("city", "grade")).fit(frame)
    cfg = make_config("student=shallow_mlp", *TINY)
    X = pre.transform(frame)
    mlp = build_model("student", cfg.student, 0, "cpu", cfg.limits).fit(X, y, X, y, 2)
    proto = onnx.load_from_string(export_model(mlp, pre, ["no", "yes"]))
    weight = next(t for t in proto.graph.initializer if t.name.startswith("torch/") and len(t.dims) == 2)
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) + 0.05, weight.name))
    deployed = DeployedModel(proto.SerializeToString(), Schema.of(pre))
    with pytest.raises(ExportError, match=r"parity check failed: onnxruntime's probabilities differ from kdx's by "
                                          r"up to [0-9.e-]+ on 300 test rows \(tolerance 1e-05\)"):
        check_parity(deployed, mlp, pre, frame)


def test_a_feature_named_like_an_output_is_refused_in_one_line():
    frame, y = mixed_rows(100)
    frame = frame.rename(columns={"income": "label"})
    pre = Preprocessor(("age", "label"), ("city",)).fit(frame)
    cfg = make_config("student=logreg", *TINY)
    X = pre.transform(frame)
    model = build_model("student", cfg.student, 0, "cpu", cfg.limits).fit(X, y, X, y, 2)
    with pytest.raises(ExportError, match=r"feature\(s\) \['label'\] have a name the exported model uses"):
        export_model(model, pre, ["no", "yes"])


def test_an_unsupported_model_is_one_line():
    from kdx.deploy.families import model_graph

    class Odd:
        pass

    with pytest.raises(ExportError, match="no ONNX exporter for Odd models; exportable: CatBoostClassifier, EBM"):
        model_graph(Odd(), 3, 2)


def test_missing_extra_names_it(monkeypatch):
    monkeypatch.setattr(deploy, "missing_packages", lambda: ["onnxruntime"])
    with pytest.raises(MissingExtra, match=r"kdx export needs onnxruntime: pip install 'kdx\[deploy\]'"):
        deploy.require("kdx export")


@pytest.fixture(scope="module")
def adult_run(tmp_path_factory):
    cfg = make_config("seeds=[0,1]", "limits.rows=400", "limits.epochs=5", "device=cpu", "profile.warmup=2",
                      "profile.repeats=10", "explain.rows=20", "explain.background=10", "explain.stability_rows=5",
                      "explain.stability_draws=2")
    return run(cfg, tmp_path_factory.mktemp("adult"))


def test_runs_time_the_export_beside_torch(adult_run):
    m = adult_run.metrics
    for col in ("ort_latency_ms", "ort_latency_batch_ms", "ort_latency_p95_ms", "onnx_bytes", "onnx_parity"):
        assert m[col].notna().all(), col
    assert (m.onnx_parity <= 1e-5).all()
    students = m[m.model != "teacher"]
    assert students.ort_latency_reduction.notna().all() and students.ort_latency_batch_reduction.notna().all()
    # KD and no-KD MLP students have one graph: one timing serves both, as for torch.
    kd, nokd = (m[m.model == name].set_index("seed") for name in ("student_kd", "student_nokd"))
    assert (kd.ort_latency_ms == nokd.ort_latency_ms).all()
    assert adult_run.summary["profile"]["onnx_resolved"] is True
    from kdx.analysis.report import write_report

    report, _ = write_report(adult_run.out_dir, figures=False)
    assert "| ONNX ms (b=1) |" in report.read_text()


def test_onnx_latency_off_or_unavailable(tmp_path, monkeypatch):
    base = ("student=logreg", "teacher=gbt", *TINY, "explain.enabled=false", "profile.repeats=5", "profile.warmup=1")
    off = run(make_config(*base, "profile.onnx=false"), tmp_path / "off")
    assert "ort_latency_ms" not in off.metrics and "latency_ms" in off.metrics
    import kdx

    card = kdx.load_run(off.out_dir).export(out=tmp_path / "card").card  # the run had no onnxruntime figures
    assert card["latency_ms"]["source"].endswith("measured at export (the run had no onnxruntime figures)")
    assert card["latency_ms"]["ort_latency_ms"] > 0 and card["latency_ms"]["latency_ms"] > 0
    monkeypatch.setattr(deploy, "missing_packages", lambda: ["onnxruntime"])
    auto = run(make_config(*base), tmp_path / "auto")
    assert "ort_latency_ms" not in auto.metrics and auto.summary["profile"]["onnx_resolved"] is False
    with pytest.raises(MissingExtra, match=r"profile.onnx=true needs onnxruntime: pip install 'kdx\[deploy\]'"):
        run(make_config(*base, "profile.onnx=true"), tmp_path / "required")


def test_export_card_matches_the_run_and_loads_back(adult_run, tmp_path):
    import kdx

    loaded = kdx.load_run(adult_run.out_dir)
    done = loaded.export(seed=1, model="student_kd", out=tmp_path / "kd")
    card = json.loads((tmp_path / "kd" / "model_card.json").read_text())
    summary = json.loads((adult_run.out_dir / "summary.json").read_text())
    for metric, stats in card["metrics"]["test"].items():
        for key in ("mean", "sd", "n"):
            assert stats[key] == summary["metrics"]["student_kd"][metric][key], (metric, key)
        assert stats["ci_low"] <= stats["mean"] <= stats["ci_high"]
        row = adult_run.metrics[(adult_run.metrics.seed == 1) & (adult_run.metrics.model == "student_kd")]
        assert stats["this_seed"] == pytest.approx(float(row[metric].iloc[0]))
    assert card["dataset"]["data_fingerprint"] == summary["data_fingerprint"]
    assert card["config"] == summary["config"] and card["distilled_from"]["kd"] == summary["kd"]
    assert card["latency_ms"]["ort_latency_ms"] == pytest.approx(float(row.ort_latency_ms.iloc[0]))
    assert card["latency_ms"]["latency_ms"] == pytest.approx(float(row.latency_ms.iloc[0]))
    assert card["parity"]["max_abs_diff"] <= 1e-5 and card["parity"]["rows"] == summary["split_sizes"]["1"]["test"]
    assert [f["name"] for f in card["inputs"]["numeric"]] == list(loaded.preprocessor(1).numeric)
    md = (tmp_path / "kd" / "model_card.md").read_text()
    assert "Model card: adult student_kd (seed 1)" in md and f"{card['metrics']['test']['accuracy']['mean']:.4f}" in md
    assert done.onnx.is_file() and (tmp_path / "kd" / "score.py").is_file()


BLOCK_KDX = """
import runpy, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("kdx", "torch", "sklearn", "pandas", "scipy", "shap"):
            raise ImportError("score.py must not import " + name)
sys.meta_path.insert(0, Block())
sys.argv = ["score.py", sys.argv[1], sys.argv[2]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_exported_model_scores_a_csv_with_onnxruntime_only(adult_run, tmp_path):
    import kdx
    from kdx.data.rows import load_data

    loaded = kdx.load_run(adult_run.out_dir)
    loaded.export(seed=0, model="student_kd", out=tmp_path / "ship")
    rows = load_data(loaded.config).X.iloc[loaded.split(0).test]
    rows = rows.copy()
    rows.iloc[:3, rows.columns.get_loc("workclass")] = np.nan  # missing categories, written as empty cells
    rows.iloc[3, rows.columns.get_loc("age")] = np.nan
    rows.to_csv(tmp_path / "rows.csv", index=False)
    res = subprocess.run([sys.executable, "-c", BLOCK_KDX, str(tmp_path / "rows.csv"), str(tmp_path / "pred.csv")],
                         cwd=tmp_path / "ship", capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    scored = pd.read_csv(tmp_path / "pred.csv")
    expected = loaded.predict_proba(rows, seed=0)
    assert np.abs(scored.iloc[:, 1:].to_numpy() - expected).max() <= 1e-5
    assert list(scored.label) == list(loaded.predict(rows, seed=0))


def _cli(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(argv)
    return exit_info.value.code, capsys.readouterr().err


def test_export_refusals_are_one_line(adult_run, tmp_path, capsys, monkeypatch):
    code, err = _cli(["export", str(tmp_path)], capsys)
    assert code == 2 and "not a kdx run directory" in err and len(err.strip().splitlines()) == 1
    code, err = _cli(["export", str(adult_run.out_dir), "--seed", "7"], capsys)
    assert code == 2 and "has checkpoints for seeds [0, 1]" in err
    monkeypatch.setattr(deploy, "missing_packages", lambda: ["onnx", "skl2onnx"])
    code, err = _cli(["export", str(adult_run.out_dir)], capsys)
    assert code == 2 and "pip install 'kdx[deploy]'" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_kdx_export_command_line(adult_run, tmp_path):
    res = subprocess.run([sys.executable, "-m", "kdx", "export", str(adult_run.out_dir), "--model", "teacher",
                          "--out", str(tmp_path / "t")], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "exported teacher (seed 0)" in res.stdout and (tmp_path / "t" / "model.onnx").is_file()


def test_measuring_with_the_seeds_encoded_rows_and_feed_changes_nothing(monkeypatch):
    """The runner hands measure_deployed the seed's encoded test rows and onnxruntime feed, made once for
    every model of the seed: parity is the same number, and the timed rows are the same rows."""
    import kdx.deploy.runtime as runtime
    from kdx.deploy.schema import raw_feed
    from kdx.measure.efficiency import ProfileSettings, profiled_rows

    frame, y = mixed_rows(300)
    pre = Preprocessor(("age", "income", "never"), ("city", "grade")).fit(frame.iloc[:200])
    cfg = make_config("student=shallow_mlp", *TINY)
    model = build_model("student", cfg.student, 0, "cpu", cfg.limits).fit(
        pre.transform(frame.iloc[:200]), y[:200], pre.transform(frame.iloc[200:250]), y[200:250], 2)
    rows = pd.concat([frame.iloc[250:], odd_rows(frame)])
    settings = ProfileSettings(repeats=3, warmup=1, batch_size=8)
    plain = runtime.measure_deployed(model, pre, rows, settings, 0, ["c0", "c1"], timed=False)
    given = runtime.measure_deployed(model, pre, rows, settings, 0, ["c0", "c1"], timed=False,
                                     encoded=pre.transform(rows), feed=raw_feed(rows, Schema.of(pre)))
    assert given == plain and plain["onnx_parity"] <= 1e-5
    timed_feeds = []
    monkeypatch.setattr(runtime, "time_calls", lambda call, *a: timed_feeds.append(call.__defaults__[0])
                        or np.ones(3))
    runtime.measure_deployed(model, pre, rows, settings, 0, ["c0", "c1"], feed=raw_feed(rows, Schema.of(pre)))
    first, picks = profiled_rows(len(rows), settings.batch_size, 0)
    for feed, idx in zip(timed_feeds, (first, picks)):
        expected = raw_feed(rows.iloc[idx], Schema.of(pre))
        assert feed.keys() == expected.keys()
        for name in feed:
            np.testing.assert_array_equal(feed[name], expected[name])
