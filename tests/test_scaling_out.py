"""Scaling out without a cluster: MLflow tracking read back with MlflowClient (a single run and a 2-job
parallel sweep), and an Optuna search on validation (+sweep=optuna) of 4 trials."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

HAS_MLFLOW = all(importlib.util.find_spec(m) for m in ("mlflow", "sqlalchemy", "alembic"))
HAS_OPTUNA = importlib.util.find_spec("optuna") is not None
HAS_JOBLIB_LAUNCHER = importlib.util.find_spec("hydra_plugins.hydra_joblib_launcher") is not None


def kdx(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kdx", *args], capture_output=True, text=True, cwd=cwd, timeout=900)


@pytest.mark.slow
@pytest.mark.skipif(not (HAS_MLFLOW and HAS_JOBLIB_LAUNCHER), reason="kdx[tracking] / kdx[parallel] not installed")
def test_mlflow_logs_every_job_nested_under_its_sweep(tmp_path):
    from mlflow.tracking import MlflowClient

    sweep = kdx("run", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "+tracking=mlflow", "+smoke=on",
                "hydra.callbacks.report.figures=true",  # the smoke preset draws none unless asked
                "kd.tau=2,4", "profile.repeats=5", f"cache.dir={tmp_path / 'cache'}",
                f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    single = kdx("run", "+tracking=mlflow", "+smoke=on", "profile.repeats=5", f"cache.dir={tmp_path / 'cache'}",
                 f"hydra.run.dir={tmp_path / 'single'}", cwd=tmp_path)
    assert single.returncode == 0, single.stderr[-3000:]
    # The default store: sqlite:///mlflow.db in the launch directory, artifacts beside it
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("kdx")
    runs = client.search_runs([experiment.experiment_id])
    kinds = {}
    for run in runs:
        kinds.setdefault(run.data.tags["kdx.kind"], []).append(run)
    (parent,) = kinds["sweep"]
    jobs = [r for r in kinds["job"] if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    alone = [r for r in kinds["job"] if "mlflow.parentRunId" not in r.data.tags]
    assert len(jobs) == 2 and len(alone) == 1
    assert all(r.info.status == "FINISHED" for r in runs)
    assert sorted(r.data.params["kd.tau"] for r in jobs) == ["2", "4"]
    for run in [*jobs, *alone]:
        folder = Path(run.data.tags["kdx.output_dir"])
        metrics = pd.read_csv(folder / "metrics.csv")
        kd = metrics[metrics.model == "student_kd"]
        history = client.get_metric_history(run.info.run_id, "student_kd/accuracy")
        assert sorted((m.step, m.value) for m in history) == sorted(zip(kd.seed, kd.accuracy))
        assert run.data.metrics["student_kd/accuracy/mean"] == pytest.approx(kd.accuracy.mean())
        assert run.data.params["student._target_"] == "kdx.models.MLPClassifier"
        assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"summary.json", "metrics.csv"}
    reports = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert "report/report.md" in reports and any(p.endswith(".png") for p in reports)
    assert "report/report.md" in {a.path for a in client.list_artifacts(alone[0].info.run_id, "report")}


@pytest.mark.slow
@pytest.mark.skipif(not HAS_OPTUNA, reason="kdx[tune] not installed")
def test_optuna_searches_on_validation(tmp_path):
    args = ("run", "+sweep=optuna", "+smoke=on", "hydra.sweeper.n_trials=4", "profile.enabled=false",
            "explain.enabled=false", f"cache.dir={tmp_path / 'cache'}")
    done = kdx(*args, f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    study = json.loads((tmp_path / "sweep" / "optuna.json").read_text())
    assert len(study["trials"]) == 4 and study["test_split"].startswith("not used")
    for trial in study["trials"]:
        summary = json.loads((Path(trial["folder"]) / "summary.json").read_text())
        # Each trial's value is its job's KD student's mean validation accuracy
        assert trial["value"] == pytest.approx(summary["metrics"]["student_kd"]["val_accuracy"]["mean"])
        tau, alpha = summary["config"]["kd"]["tau"], summary["config"]["kd"]["alpha"]
        assert 1 <= tau <= 10 and 0 <= alpha <= 1
        assert (tau, alpha) == (trial["params"]["kd.tau"], trial["params"]["kd.alpha"])
    best = max(study["trials"], key=lambda t: t["value"])
    assert study["best"]["job"] == best["job"]
    report = (tmp_path / "sweep" / "report.md").read_text()
    assert f"Best trial: job {best['job']}" in report and "the test split took no part" in report
    # Seeded: the same seed proposes the same first trials
    again = kdx(*args[:3], "hydra.sweeper.n_trials=2", *args[4:], f"hydra.sweep.dir={tmp_path / 'again'}", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    first = json.loads((tmp_path / "again" / "optuna.json").read_text())["trials"]
    assert [t["params"] for t in first] == [t["params"] for t in study["trials"][:2]]
    # The search owns its keys: choosing one on the command line is refused in one line
    clash = kdx(*args, "kd.tau=3", f"hydra.sweep.dir={tmp_path / 'clash'}", cwd=tmp_path)
    assert clash.returncode == 2 and clash.stderr.strip().splitlines()[-1].startswith(
        "kdx: error: +sweep=optuna chooses kd.tau, kd.alpha, student.hidden itself; remove kd.tau")


@pytest.mark.slow
@pytest.mark.skipif(not HAS_MLFLOW, reason="kdx[tracking] not installed")
def test_mlflow_logs_a_regression_as_it_is(tmp_path):
    from mlflow.tracking import MlflowClient

    done = kdx("run", "+tracking=mlflow", "dataset=diabetes", "+smoke=on", "profile.enabled=false",
               "explain.enabled=false", f"cache.dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'r'}",
               cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("kdx").experiment_id])
    kd = pd.read_csv(tmp_path / "r" / "metrics.csv").query("model == 'student_kd'")
    assert run.data.metrics["student_kd/r2/mean"] == pytest.approx(kd.r2.mean())
    assert run.data.metrics["student_kd/rmse/mean"] == pytest.approx(kd.rmse.mean())
    assert run.data.params["dataset.task"] == "auto" and run.data.params["kd.tau"] == "None"


@pytest.mark.slow
@pytest.mark.skipif(not HAS_OPTUNA, reason="kdx[tune] not installed")
def test_optuna_on_a_regression_maximizes_validation_r2_without_a_temperature(tmp_path):
    done = kdx("run", "+sweep=optuna", "dataset=diabetes", "+smoke=on", "hydra.sweeper.n_trials=2",
               "profile.enabled=false", "explain.enabled=false", f"cache.dir={tmp_path / 'cache'}",
               f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    study = json.loads((tmp_path / "sweep" / "optuna.json").read_text())
    assert "kd.tau" not in study["space"] and "R² for a regression" in study["objective"]
    for trial in study["trials"]:
        summary = json.loads((Path(trial["folder"]) / "summary.json").read_text())
        assert trial["value"] == pytest.approx(summary["metrics"]["student_kd"]["val_r2"]["mean"])
        assert summary["kd"]["tau"] is None and summary["config"]["kd"]["alpha"] == trial["params"]["kd.alpha"]


def test_a_missing_extra_is_one_line(monkeypatch, capsys):
    import importlib.util as util

    from kdx.cli import check_extras

    real = util.find_spec
    monkeypatch.setattr(util, "find_spec", lambda name, *a: None if name in ("mlflow", "optuna") else real(name, *a))
    for option, expected in (("+tracking=mlflow", "tracking=mlflow needs mlflow: pip install 'kdx[tracking]'"),
                             ("+sweep=optuna", "sweep=optuna needs optuna: pip install 'kdx[tune]'")):
        with pytest.raises(SystemExit) as exit_info:
            check_extras(["+smoke=on", option])
        assert exit_info.value.code == 2 and expected in capsys.readouterr().err
    check_extras(["+smoke=on", "kd.tau=2"])  # nothing asked, nothing refused
