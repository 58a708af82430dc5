import itertools

import pytest

from kdx.cli import config_options
from kdx.config import validate
from kdx.data.rows import build_dataset
from kdx.errors import ConfigError
from kdx.models import Classifier
from kdx.run.building import build_model, build_objective

OPTIONS = config_options()


def test_groups_are_the_documented_interface():
    assert OPTIONS["dataset"] == ["adult", "breast_cancer", "csv", "diabetes", "wine_quality"]
    assert OPTIONS["teacher"] == ["catboost", "dnn", "gbt", "lightgbm", "mlp4", "pretrained", "xgboost"]
    assert OPTIONS["student"] == ["ebm", "lightgbm_small", "logreg", "mlp1", "shallow_mlp", "small_gbt", "tree",
                                  "xgboost_small"]
    assert OPTIONS["augment"] == ["munge", "none", "rows", "spunge"]
    assert {"adult", "breast_cancer", "wine_quality"} <= set(OPTIONS["experiment"])


TRAINED = [t for t in OPTIONS["teacher"] if t != "pretrained"]  # pretrained needs a file: tests/test_pretrained.py


@pytest.mark.parametrize("teacher,student", list(itertools.product(TRAINED, OPTIONS["student"])))
def test_every_pair_composes_and_builds(compose_cfg, teacher, student):
    cfg = compose_cfg(f"teacher={teacher}", f"student={student}")
    validate(cfg)
    for role in ("teacher", "student"):
        assert isinstance(build_model(role, cfg[role], seed=0, device="cpu", limits=cfg.limits), Classifier)


def test_pretrained_teacher_without_a_file_is_one_line(compose_cfg):
    with pytest.raises(ConfigError, match=r"required value\(s\) not set: \['teacher.path'\]"):
        validate(compose_cfg("teacher=pretrained"))


@pytest.mark.parametrize("option", OPTIONS["dataset"] + [f"experiment={e}" for e in OPTIONS["experiment"]])
def test_every_dataset_and_experiment_composes(compose_cfg, option):
    cfg = compose_cfg(option if "=" in option else f"dataset={option}")
    validate(cfg)


@pytest.mark.parametrize("experiment,pair", [
    ("adult", ("adult", "dnn", "shallow_mlp")),
    ("breast_cancer", ("breast_cancer", "gbt", "logreg")),
    ("wine_quality", ("wine_quality", "mlp4", "mlp1")),
])
def test_experiments_are_the_study_pairs(compose_cfg, experiment, pair):
    cfg = compose_cfg(f"experiment={experiment}")
    assert (cfg.dataset.name, cfg.teacher.name, cfg.student.name) == pair


def test_study_defaults(compose_cfg):
    cfg = compose_cfg()
    assert list(cfg.seeds) == [0, 1, 2, 3, 4]
    assert list(cfg.teacher.hidden) == [512, 256, 128, 64, 32] and list(cfg.student.hidden) == [64, 32]
    assert compose_cfg("teacher=gbt").teacher.n_estimators == 200


@pytest.mark.parametrize("override,match", [
    ("kd.alpha=1.5", "kd: kd.alpha must be a number >= 0.0 and <= 1.0"), ("kd.alpha=-0.1", "kd: kd.alpha"),
    ("kd.tau=0", "kd: kd.tau must be a number > 0.0"), ("kd.tau=-2", "kd: kd.tau"), ("kd.tau=abc", "kd: kd.tau"),
    ("kd=dkd kd.dkd_beta=-1", "kd: kd.dkd_beta"), ("kd=label_smoothing kd.epsilon=2", "kd: kd.epsilon"),
])
def test_bad_objective_settings_are_named_by_the_objective(compose_cfg, override, match):
    """kd.* rules live in the objective's constructor, once; it is built at the door (kdx.run.checks)."""
    with pytest.raises(ConfigError, match=match):
        build_objective(compose_cfg(*override.split()).kd)


@pytest.mark.parametrize("override,match", [
    ("seeds=[]", "seeds"), ("seeds=[0,0]", "distinct"), ("seeds=[-1]", "seeds"),
    ("split.train=0.9", "split"), ("device=tpu", "device"), ("metrics.ece_bins=0", "ece_bins"),
    ("limits.rows=10", "limits.rows"), ("limits.epochs=0", "limits.epochs"),
    ("explain.method=kernel", "explain.method must be one of auto, permutation, exact"),
    ("explain.permutations=0", "explain.permutations"),
])
def test_bad_values_are_named(compose_cfg, override, match):
    with pytest.raises(ConfigError, match=match):
        validate(compose_cfg(override))


@pytest.mark.parametrize("override,match", [
    ("teacher.epochs=0", "teacher: epochs"), ("student.hidden=[64,0]", "student: hidden"),
    ("student.lr=-1", "student: lr"), ("teacher=gbt", None), ("+teacher.bogus=1", "bogus"),
])
def test_bad_model_settings_are_named(compose_cfg, override, match):
    cfg = compose_cfg(override)
    if match is None:
        build_model("teacher", cfg.teacher, 0, "cpu", cfg.limits)
        return
    role = override.lstrip("+").split(".")[0]
    with pytest.raises(ConfigError, match=match):
        build_model(role, cfg[role], 0, "cpu", cfg.limits)


def test_limits_cap_training_budget(compose_cfg):
    cfg = compose_cfg("limits.epochs=3", "limits.n_estimators=7", "teacher=gbt")
    assert build_model("teacher", cfg.teacher, 0, "cpu", cfg.limits).n_estimators == 7
    assert build_model("student", cfg.student, 0, "cpu", cfg.limits).epochs == 3


def test_csv_dataset_builds_from_overrides(compose_cfg, tiny_csv):
    cfg = compose_cfg("dataset=csv", f"dataset.path={tiny_csv}", "dataset.target=label", "dataset.drop=[id]")
    assert build_dataset(cfg.dataset).X.shape == (240, 3)


def test_run_folders_written_before_the_layers_still_load(tmp_path, monkeypatch):
    """A run folder's config names the old `_target_`s and its checkpoints pickle the old module paths
    (kdx.preprocess, kdx.raw): both are mapped to where the classes live now."""
    import sys

    import joblib
    import numpy as np
    import pandas as pd

    import kdx.data.preprocess
    from kdx.config import instantiate_node
    from kdx.data import TabularData
    from kdx.data.preprocess import Preprocessor
    from kdx.distill.objectives import Hinton
    from kdx.models import load_checkpoint

    assert isinstance(instantiate_node("dataset", {"_target_": "kdx.datasets.load_breast_cancer"}), TabularData)
    assert isinstance(instantiate_node("kd", {"_target_": "kdx.objectives.hinton.Hinton", "tau": 2.0,
                                              "alpha": 0.5}), Hinton)
    pre = Preprocessor(("a",), ("c",)).fit(pd.DataFrame({"a": [1.0, 2.0, np.nan], "c": ["x", "y", None]}))
    monkeypatch.setitem(sys.modules, "kdx.preprocess", kdx.data.preprocess)
    monkeypatch.setattr(Preprocessor, "__module__", "kdx.preprocess")
    joblib.dump(pre, tmp_path / "preprocessor.joblib")  # pickled under the old module path
    monkeypatch.undo()
    assert "kdx.preprocess" not in sys.modules
    with open(tmp_path / "preprocessor.joblib", "rb") as fh:
        assert b"kdx.preprocess" in fh.read()
    again = load_checkpoint(tmp_path / "preprocessor.joblib")
    frame = pd.DataFrame({"a": [3.0], "c": ["x"]})
    np.testing.assert_array_equal(again.transform(frame), pre.transform(frame))
    assert "kdx.preprocess" not in sys.modules  # the alias lives only while loading
