"""The real command line, as a user types it."""

import json
import subprocess
import sys

import pandas as pd
import pytest

pytestmark = pytest.mark.slow


def kdx(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "kdx", *args], capture_output=True, text=True, cwd=cwd, timeout=600)


def test_version_and_help():
    assert kdx("--version").stdout.startswith("kdx ")
    assert "eval" in kdx("--help").stdout
    out = kdx("run", "--help").stdout
    for line in ("dataset: adult, breast_cancer, csv, diabetes, wine_quality",
                 "teacher: catboost, dnn, gbt, lightgbm, mlp4, pretrained, xgboost",
                 "student: ebm, lightgbm_small, logreg, mlp1, shallow_mlp, small_gbt, tree, xgboost_small",
                 "augment: munge, none, rows, spunge"):
        assert line in out


def test_cfg_job_prints_composed_config():
    out = kdx("run", "experiment=wine_quality", "--cfg", "job").stdout
    assert "name: mlp4" in out and "name: wine_quality" in out


def test_smoke_run_then_eval(tmp_path):
    out_dir = tmp_path / "run"
    res = kdx("run", "+smoke=on", "experiment=wine_quality", f"hydra.run.dir={out_dir}")
    assert res.returncode == 0, res.stderr
    assert "student_kd" in res.stdout and str(out_dir) in res.stdout.replace("\n", "")
    metrics = pd.read_csv(out_dir / "metrics.csv")
    assert len(metrics) == 6
    assert json.loads((out_dir / "summary.json").read_text())["complete"]
    assert (out_dir / ".hydra" / "config.yaml").exists()
    ev = kdx("eval", str(out_dir))
    assert ev.returncode == 0, ev.stdout + ev.stderr
    assert "OK" in ev.stdout


def test_multirun_sweep(tmp_path):
    res = kdx("run", "-m", "+smoke=on", "dataset=breast_cancer", "seeds=[0]", "kd.tau=1,3", "kd.alpha=0.5",
              f"hydra.sweep.dir={tmp_path}")
    assert res.returncode == 0, res.stderr
    taus = sorted(json.loads((tmp_path / str(i) / "summary.json").read_text())["kd"]["tau"] for i in (0, 1))
    assert taus == [1.0, 3.0]


@pytest.mark.parametrize("args,needle", [
    (["kd.alpha=1.5"], "kd.alpha"),
    (["kd.tau=0"], "kd.tau"),
    (["dataset=nope"], "unknown dataset 'nope'"),
    (["teacher=logreg"], "unknown teacher 'logreg'"),
    (["student=xgboost"], "unknown student"),
    (["dataset=csv", "dataset.path=/no/such.csv", "dataset.target=y"], "not found"),
    (["dataset=csv", "dataset.target=y"], "dataset.path"),
    (["teacher.epochs=-3"], "teacher: epochs"),
])
def test_bad_input_one_line_nonzero_exit(tmp_path, args, needle):
    res = kdx("run", "+smoke=on", *args, f"hydra.run.dir={tmp_path}/r")
    assert res.returncode != 0
    assert "Traceback" not in res.stderr + res.stdout
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and needle in err[0], res.stderr
    assert not (tmp_path / "r" / "summary.json").exists()


def test_csv_end_to_end(tmp_path, tiny_csv):
    res = kdx("run", "dataset=csv", f"dataset.path={tiny_csv}", "dataset.target=label", "dataset.drop=[id]",
              "teacher=gbt", "student=logreg", "+smoke=on", f"hydra.run.dir={tmp_path}/r")
    assert res.returncode == 0, res.stderr
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["dataset"]["features"] == ["age", "city", "score"]


def test_eval_rejects_a_non_run_directory(tmp_path):
    res = kdx("eval", str(tmp_path))
    assert res.returncode == 2 and "not a kdx run directory" in res.stderr


def test_wheel_ships_the_configs_and_the_data(tmp_path):
    """An installed (non-editable) kdx finds its config through pkg://kdx.conf and its bundled data."""
    import zipfile
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(root),
                          "-w", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    names = zipfile.ZipFile(next(tmp_path.glob("kdx-*.whl"))).namelist()
    for expected in ("kdx/conf/config.yaml", "kdx/conf/dataset/adult.yaml", "kdx/conf/student/tree.yaml",
                     "kdx/conf/hydra/launcher/slurm.yaml", "kdx/data/bundled/SHA256SUMS",
                     "kdx/distill/objectives/hinton.py", "kdx/deploy/graph.py", "kdx/deploy/score.py",
                     "kdx/models/pretrained.py", "kdx/data/raw.py", "kdx/tracking/mlflow_tracker.py",
                     "hydra_plugins/kdx_plugins/optuna_sweeper.py", "hydra_plugins/kdx_plugins/slurm_launcher.py",
                     "hydra_plugins/kdx_plugins/_slurm_launcher.py", "hydra_plugins/kdx_plugins/joblib_launcher.py",
                     "kdx/conf/tracking/mlflow.yaml", "kdx/conf/sweep/optuna.yaml",
                     "kdx/data/bundled/adult.data.gz", "kdx/data/bundled/winequality-white.csv.gz"):
        assert expected in names, expected


def test_kdx_plugins_import_quietly_without_the_parallel_extra():
    """Hydra imports every plugin module at start-up and warns for each that fails; kdx's launchers need
    kdx[parallel] only when they are used."""
    missing = "('hydra_plugins.hydra_submitit_launcher', 'hydra_plugins.hydra_joblib_launcher', 'submitit')"
    code = ("import sys\n"
            f"for name in {missing}:\n"
            "    sys.modules[name] = None  # as if not installed\n"
            "from hydra.core.plugins import Plugins\n"
            "from hydra.plugins.launcher import Launcher\n"
            "print([p.__name__ for p in Plugins.instance().discover(Launcher)])\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "Error importing" not in res.stderr, res.stderr
    assert "'BasicLauncher'" in res.stdout and "JoblibLauncher" not in res.stdout
