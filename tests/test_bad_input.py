"""The bad-input matrix: damaged state, real-world tables, diverging training and odd config shapes, each
through the real command line. Every failure is one `kdx: error:` line and a non-zero exit, never a
traceback, and nothing is left that looks complete; the cases that used to give wrong or stale numbers give
the right number or a refusal."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.slow
SMOKE = ("+smoke=on", "profile.repeats=5", "explain.rows=20")


def kdx(*args, env=None):
    return subprocess.run([sys.executable, "-m", "kdx", *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})


def one_line_error(res, needle: str) -> str:
    assert res.returncode != 0, res.stdout[-2000:]
    assert "Traceback" not in res.stderr + res.stdout, res.stderr[-3000:]
    err = [line for line in res.stderr.strip().splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("kdx: error:"), res.stderr
    assert needle in err[0], err[0]
    return err[0]


def csv_run(path, out, *extra, target="label"):
    return kdx("run", "dataset=csv", f"dataset.path={path}", f"dataset.target={target}", "teacher=gbt",
               "student=logreg", *SMOKE, f"hydra.run.dir={out}", *extra)


def table(n: int = 240, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    score = rng.normal(0, 1, n)
    city = rng.choice(["north", "south", "east"], n)
    return pd.DataFrame({"id": np.arange(n), "age": rng.normal(40, 10, n).round(1), "city": city, "score": score,
                         "label": np.where(score + (city == "north") > 0.5, "yes", "no")})


# ---- wrong or stale numbers -------------------------------------------------------------------------------

def test_rerun_after_the_data_changed_recomputes(tmp_path):
    path = tmp_path / "t.csv"
    frame = table()
    frame.to_csv(path, index=False)
    assert csv_run(path, tmp_path / "r").returncode == 0
    before = pd.read_csv(tmp_path / "r" / "metrics.csv")
    frame["label"] = np.where(frame.label == "yes", "no", "yes")  # every label flipped
    frame.to_csv(path, index=False)
    res = csv_run(path, tmp_path / "r")
    assert res.returncode == 0, res.stderr
    assert "skipped" not in res.stdout and "other data" in res.stdout
    after = pd.read_csv(tmp_path / "r" / "metrics.csv")
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["data_fingerprint"] and not before.equals(after)
    again = csv_run(path, tmp_path / "r")  # same data and code: now it is skipped
    assert again.returncode == 0 and "skipped" in again.stdout


def test_a_numeric_typo_is_named_and_the_user_chooses(tmp_path):
    frame = table()
    frame["age"] = frame["age"].astype(object)
    frame.loc[5, "age"] = "oops"
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    line = one_line_error(csv_run(path, tmp_path / "r"), "'age'")
    assert "oops" in line and "dataset.numeric=[age, ...]" in line  # a list, not eaten as markup
    res = csv_run(path, tmp_path / "ok", "dataset.numeric=[age,score]", "dataset.drop=id")
    assert res.returncode == 0, res.stderr
    assert "1 unparseable cell" in res.stdout
    assert json.loads((tmp_path / "ok" / "summary.json").read_text())["dataset"]["features"] == ["age", "city",
                                                                                                  "score"]


def test_a_continuous_target_as_classes_is_refused_and_auto_predicts_it(tmp_path):
    path = tmp_path / "t.csv"
    table().to_csv(path, index=False)
    one_line_error(csv_run(path, tmp_path / "r", "dataset.task=classification", target="score"),
                   "predict it as a number with dataset.task=regression")
    res = csv_run(path, tmp_path / "auto", target="score")
    assert res.returncode == 0, res.stderr
    log = (tmp_path / "auto" / "kdx.log").read_text()
    assert "240 distinct numeric values (not whole numbers): predicted as a number, a regression" in log
    assert "r2" in pd.read_csv(tmp_path / "auto" / "metrics.csv")


@pytest.mark.parametrize("target,extra,needle", [
    (np.full(240, 3.5), ("dataset.task=regression",), "holds one value (3.5) in every row: nothing to predict"),
    (np.where(np.arange(240) == 9, np.nan, np.arange(240) + 0.5), (), "1 missing value(s)"),
    (np.where(np.arange(240) == 9, np.inf, np.arange(240) + 0.5), (), "1 infinite value(s)"),
    (np.where(np.arange(240) % 2, "yes", "no"), ("dataset.task=regression",), "needs a numeric target"),
    (np.arange(240) + 0.5, ("kd.tau=2",), "kd.tau=2 with a regression"),
    (np.arange(240) + 0.5, ("kd=dkd",), "kd=dkd does not apply to a regression"),
])
def test_regression_bad_input_is_one_line(tmp_path, target, extra, needle):
    path = tmp_path / "t.csv"
    frame = table()
    frame["label"] = target
    frame.to_csv(path, index=False)
    one_line_error(csv_run(path, tmp_path / "r", *extra), needle)
    assert not (tmp_path / "r" / "summary.json").exists()


def test_report_without_profiling_or_explanations_picks_students_and_says_why(tmp_path):
    res = kdx("run", *SMOKE, "profile.enabled=false", "explain.enabled=false", f"hydra.run.dir={tmp_path}")
    assert res.returncode == 0, res.stderr
    best = pd.read_csv(tmp_path / "report_best_per_profile.csv")
    assert len(best) == 4 and set(best.model) <= {"student_kd", "student_nokd"} and best["test J"].notna().all()
    text = (tmp_path / "report.md").read_text()
    assert "C = mean of model/teacher over params, flops" in text and "I is undefined and left out of J" in text


def test_result_files_respect_the_umask(tmp_path):
    res = kdx("run", *SMOKE, "explain.enabled=false", f"hydra.run.dir={tmp_path}")
    assert res.returncode == 0, res.stderr
    umask = os.umask(0)
    os.umask(umask)
    for name in ("metrics.csv", "summary.json", "report.md", "stats.csv", "config.yaml"):
        mode = stat.S_IMODE((tmp_path / name).stat().st_mode)
        assert mode == 0o666 & ~umask, (name, oct(mode))


# ---- damaged state --------------------------------------------------------------------------------------

def test_a_damaged_cache_entry_is_recomputed_with_a_warning(tmp_path):
    cache = tmp_path / "cache"
    env = {"KDX_CACHE": str(cache)}
    assert kdx("run", *SMOKE, f"hydra.run.dir={tmp_path}/a", env=env).returncode == 0
    models = sorted((cache / "models").glob("*/model.*"))
    assert models
    for file in models:  # truncate every cached model
        file.write_bytes(file.read_bytes()[:50])
    res = kdx("run", *SMOKE, f"hydra.run.dir={tmp_path}/b", env=env)
    assert res.returncode == 0, res.stderr
    assert "is damaged" in res.stdout and "recomputing" in res.stdout
    a, b = (pd.read_csv(tmp_path / d / "metrics.csv") for d in ("a", "b"))
    assert np.allclose(a.accuracy, b.accuracy)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("finished")
    res = kdx("run", *SMOKE, "explain.enabled=false", "profile.enabled=false", f"hydra.run.dir={out}")
    assert res.returncode == 0, res.stderr
    return out


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("damage,needle", [
    (lambda r: (r / "checkpoints/seed_0/student_kd.pt").write_bytes(b"PK\x03"), "student_kd.pt"),
    (lambda r: (r / "checkpoints/seed_0/split.npz").unlink(), "split.npz is missing"),
    (lambda r: (r / "checkpoints/seed_0/preprocessor.joblib").write_bytes(b"\x80\x04"), "preprocessor.joblib"),
    (lambda r: (r / "metrics.csv").write_text('seed,model,accuracy\n0,"teach'), "metrics.csv"),
    (lambda r: (r / "metrics.csv").unlink(), "finished no seed"),
    (lambda r: (r / "config.yaml").write_text("dataset: [unclosed"), "config.yaml"),
])
def test_eval_on_damaged_run_files(tmp_path, finished_run, damage, needle):
    run = _copy(finished_run, tmp_path / "run")
    damage(run)
    one_line_error(kdx("eval", str(run)), needle)


def test_report_on_a_damaged_summary_and_rerun_into_it(tmp_path, finished_run):
    run = _copy(finished_run, tmp_path / "run")
    (run / "summary.json").write_text('{"complete": tr')
    one_line_error(kdx("report", str(run)), "summary.json")
    res = kdx("run", *SMOKE, "explain.enabled=false", "profile.enabled=false", f"hydra.run.dir={run}")
    assert res.returncode == 0 and "unreadable" in res.stdout, res.stderr
    assert json.loads((run / "summary.json").read_text())["complete"]


def test_report_on_a_run_killed_before_its_first_seed(tmp_path, finished_run):
    run = tmp_path / "killed"
    run.mkdir()
    (run / "config.yaml").write_text((finished_run / "config.yaml").read_text())
    res = kdx("report", str(run))
    assert res.returncode == 0 and "Traceback" not in res.stderr
    assert "did not finish" in (run / "report.md").read_text()


# ---- filesystems ----------------------------------------------------------------------------------------

def test_cache_path_that_is_a_file(tmp_path):
    blocker = tmp_path / "cache"
    blocker.write_text("not a directory")
    one_line_error(kdx("run", *SMOKE, f"hydra.run.dir={tmp_path}/r", env={"KDX_CACHE": str(blocker)}), "cache.dir")
    assert not (tmp_path / "r" / "summary.json").exists()


def test_output_folder_under_a_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    one_line_error(kdx("run", *SMOKE, f"hydra.run.dir={blocker}/run"), str(blocker))


def test_a_failed_checkpoint_write_leaves_no_file(tmp_path):
    from kdx.errors import NoSpace
    from kdx.run.artefacts import save_atomically

    class Failing:
        def save(self, stem):
            path = stem.with_suffix(".pt")
            path.write_bytes(b"partial")
            raise OSError(28, "No space left on device", str(path))

    with pytest.raises(NoSpace, match=f"no space left on the disk of {tmp_path} writing the checkpoint student_kd"):
        save_atomically(Failing(), tmp_path, "student_kd")
    assert list(tmp_path.iterdir()) == []


# ---- diverging training ---------------------------------------------------------------------------------

def test_extreme_values_are_refused_before_training(tmp_path):
    frame = table()
    frame.loc[::3, "age"] = 1e308
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    one_line_error(csv_run(path, tmp_path / "r", "dataset.drop=[id]"), "not finite after standardization")


def test_a_huge_learning_rate_fails_naming_model_seed_and_epoch(tmp_path):
    line = one_line_error(kdx("run", *SMOKE, "teacher.lr=1e12", f"hydra.run.dir={tmp_path}"), "diverged")
    assert "teacher seed" in line and "epoch" in line and "learning rate" in line
    assert not (tmp_path / "summary.json").exists()


# ---- reading tables -------------------------------------------------------------------------------------

@pytest.mark.parametrize("content,needle", [
    (b"", "is empty"),
    (b"age,score,label\n", "header but no rows"),
    (b"label\nyes\nno\nyes\n", "single column"),
])
def test_odd_files(tmp_path, content, needle):
    path = tmp_path / "t.csv"
    path.write_bytes(content)
    one_line_error(csv_run(path, tmp_path / "r"), needle)


def test_a_directory_the_target_dropped_and_an_unknown_encoding(tmp_path):
    one_line_error(csv_run(tmp_path, tmp_path / "r"), "is a directory")
    path = tmp_path / "t.csv"
    table().to_csv(path, index=False)
    one_line_error(csv_run(path, tmp_path / "r", "dataset.drop=[id,label]"), "dataset.drop names the target")
    one_line_error(csv_run(path, tmp_path / "r", "dataset.encoding=klingon"), "unknown dataset.encoding")


def test_bom_int_target_latin1_and_parquet_tables_work(tmp_path):
    frame = table().rename(columns={"label": "2024"})
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + frame.to_csv(index=False).encode())
    res = csv_run(bom, tmp_path / "a", "dataset.drop=id", target="2024")  # Hydra passes 2024 as an int
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["dataset"]["features"] == ["age", "city",
                                                                                                 "score"]
    latin = tmp_path / "latin.csv"
    frame.assign(city=frame.city.str.replace("north", "nörd")).to_csv(latin, index=False, encoding="latin-1")
    one_line_error(csv_run(latin, tmp_path / "b", target="2024"), "dataset.encoding")
    assert csv_run(latin, tmp_path / "c", "dataset.encoding=latin-1", target="2024").returncode == 0
    parquet = tmp_path / "t.parquet"
    table().to_parquet(parquet)
    res = csv_run(parquet, tmp_path / "d", "dataset.drop=[id]")
    assert res.returncode == 0, res.stderr


# ---- config shapes --------------------------------------------------------------------------------------

def test_single_names_and_an_int_layer_are_lists(tmp_path):
    path = tmp_path / "t.csv"
    table().to_csv(path, index=False)
    res = kdx("run", "dataset=csv", f"dataset.path={path}", "dataset.target=label", "dataset.drop=id",
              "dataset.categorical=city", "teacher.hidden=16", *SMOKE, f"hydra.run.dir={tmp_path}/r")
    assert res.returncode == 0, res.stderr
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["dataset"]["features"] == ["age", "city", "score"]


def test_unknown_key_and_help_into_a_closed_pipe():
    one_line_error(kdx("run", "nosuchkey=1"), "nosuchkey")
    res = subprocess.run(f"{sys.executable} -m kdx run --help | head -1", shell=True, capture_output=True, text=True,
                         timeout=120)
    assert "Traceback" not in res.stderr and "BrokenPipe" not in res.stderr
