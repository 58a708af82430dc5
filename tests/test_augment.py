"""Teacher-labelled augmentation (kdx.data.augment) and out-of-fold soft labels (kdx.distill.labels)."""

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from conftest import TINY
from scipy.special import softmax
from sklearn.neighbors import NearestNeighbors

from kdx.analysis.report import write_report
from kdx.analysis.stats import gap_recovered
from kdx.data import load_adult, load_breast_cancer
from kdx.data.augment import generate_rows
from kdx.data.augment.munge import Munge, nearest_other
from kdx.data.augment.rows import FileRows
from kdx.data.augment.spunge import Spunge
from kdx.data.rows import prepare_seed, subsample
from kdx.distill.labels import FixedLogits, out_of_fold_logits
from kdx.errors import ConfigError, DataError
from kdx.models.losses import kd_loss
from kdx.models.soft_targets import blended_targets
from kdx.run.protocol import run

SPLIT = {"scheme": "holdout", "folds": 5, "fractions": (0.7, 0.15, 0.15)}


@pytest.fixture(scope="module")
def adult():
    data = subsample(load_adult(), 6000)
    return data, prepare_seed(data, 0, SPLIT)


def _generate(augmenter, data, sd, seed=0):
    return generate_rows(augmenter, data, sd.split.train, sd.X["train"], sd.preprocessor, seed)


@pytest.mark.parametrize("augmenter", [Munge(size_factor=3), Spunge(size_factor=3)], ids=["munge", "spunge"])
def test_generated_marginals_match_the_training_rows(adult, augmenter):
    """Stated tolerance: every numeric feature's mean within 0.1 sd and sd within 15 % of the training rows';
    every categorical feature's distribution within total-variation distance 0.05."""
    data, sd = adult
    rows = _generate(augmenter, data, sd)
    train = data.X.iloc[sd.split.train]
    assert len(rows) > 2 * len(train)  # size_factor 3, some copies dropped
    for c in data.numeric:
        sd_train = train[c].std()
        assert abs(rows.frame[c].mean() - train[c].mean()) < 0.1 * sd_train, c
        assert abs(rows.frame[c].std() / sd_train - 1) < 0.15, c
    for c in data.categorical:
        p = train[c].value_counts(normalize=True)
        q = rows.frame[c].value_counts(normalize=True)
        tv = 0.5 * p.subtract(q, fill_value=0).abs().sum()
        assert tv < 0.05, (c, tv)


@pytest.mark.parametrize("augmenter", [Munge(size_factor=2), Spunge(size_factor=2)], ids=["munge", "spunge"])
def test_rows_come_from_the_training_rows_only(adult, augmenter):
    """Poisoning the validation and test rows (two different ways) changes nothing in the generated rows: they
    are made from the training rows alone. No generated row copies a dataset row or another generated row."""
    data, sd = adult
    outside = np.concatenate([sd.split.val, sd.split.test])
    made = []
    for poison in (1e6, -1e6):
        X = data.X.copy()
        X.loc[X.index[outside], list(data.numeric)] = poison
        X.loc[X.index[outside], list(data.categorical)] = f"poison{poison}"
        made.append(_generate(augmenter, replace(data, X=X), sd))
    pd.testing.assert_frame_equal(made[0].frame, made[1].frame)
    np.testing.assert_array_equal(made[0].X, made[1].X)
    rows = _generate(augmenter, data, sd)
    for c in data.categorical:  # values seen in the training rows only
        assert set(rows.frame[c].dropna()) <= set(data.X.iloc[sd.split.train][c].dropna())
    columns = list(data.X.columns)
    joined = pd.concat([data.X, rows.frame], ignore_index=True)
    assert not joined.astype(str).duplicated().iloc[len(data.X):].any()
    assert rows.record()["rows"] + rows.record()["duplicates_dropped"] == rows.requested
    assert list(rows.frame.columns) == columns


def test_generation_is_deterministic_per_seed_and_keeps_integer_columns(adult):
    data, sd = adult
    a, b = _generate(Munge(size_factor=1), data, sd, 0), _generate(Munge(size_factor=1), data, sd, 0)
    pd.testing.assert_frame_equal(a.frame, b.frame)
    other = _generate(Munge(size_factor=1), data, sd, 1)
    assert not a.frame.equals(other.frame)
    for c in ("age", "education-num", "hours-per-week"):
        values = a.frame[c].dropna().to_numpy()
        assert np.all(values == np.round(values)), c


def test_nearest_other_row_matches_scikit_learn():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(700, 12)).astype(np.float32)
    _, index = NearestNeighbors(n_neighbors=2).fit(X).kneighbors(X)
    expected = np.where(index[:, 0] != np.arange(len(X)), index[:, 0], index[:, 1])
    np.testing.assert_array_equal(nearest_other(X, chunk=128), expected)
    X[5] = X[9]  # an exact copy is the nearest other row
    found = nearest_other(X)
    assert found[5] == 9 and found[9] == 5


def test_a_file_of_rows_is_checked_against_the_dataset(tmp_path, adult):
    data, sd = adult
    train = data.X.iloc[sd.split.train]
    path = tmp_path / "traffic.csv"
    extra = train.head(50).assign(customer_id=range(50), income=">50K")
    extra.to_csv(path, index=False)
    rows = _generate(FileRows(path=str(path)), data, sd)
    assert len(rows) == 0  # every row of the file is a dataset row: dropped
    shifted = train.head(50).assign(age=train.head(50)["age"] + 0.5)
    shifted.to_csv(path, index=False)
    rows = _generate(FileRows(path=str(path), max_rows=30), data, sd)
    assert len(rows) == 30 and list(rows.frame.columns) == list(data.X.columns)
    shifted.drop(columns=["workclass"]).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"lacks the dataset's feature column\(s\) \['workclass'\]"):
        _generate(FileRows(path=str(path)), data, sd)
    shifted.assign(age="old").to_csv(path, index=False)
    with pytest.raises(DataError, match="column 'age' is numeric in the dataset but holds text"):
        _generate(FileRows(path=str(path)), data, sd)
    with pytest.raises(DataError, match="file not found"):
        FileRows(path=str(tmp_path / "missing.csv"))


def test_settings_are_checked_at_the_door():
    with pytest.raises(ConfigError, match="augment.p must be a number"):
        Munge(p=1.5)
    with pytest.raises(ConfigError, match="augment.size_factor must be a number > 0"):
        Spunge(size_factor=0)
    with pytest.raises(ConfigError, match="augment.max_rows must be an integer"):
        Spunge(max_rows=2.5)


def test_the_kd_loss_on_rows_without_labels():
    """Label term: mean over labelled rows; teacher term: mean over all rows (torch's own functions)."""
    torch.manual_seed(0)
    z, t = torch.randn(8, 3), torch.randn(8, 3)
    y = torch.tensor([0, 2, 1, -1, -1, 1, -1, 0])
    tau, alpha = 2.0, 0.3
    lab = y >= 0
    ce = F.cross_entropy(z[lab], y[lab])
    kl = F.kl_div(F.log_softmax(z / tau, 1), F.softmax(t / tau, 1), reduction="batchmean")
    assert float(kd_loss(z, t, y, tau, alpha)) == pytest.approx(float(alpha * ce + (1 - alpha) * tau**2 * kl), rel=1e-6)
    # all labelled: exactly the study's loss
    y_all = torch.tensor([0, 2, 1, 1, 0, 1, 2, 0])
    ce_all = F.cross_entropy(z, y_all)
    assert float(kd_loss(z, t, y_all, tau, alpha)) == pytest.approx(float(alpha * ce_all + (1 - alpha) * tau**2 * kl))


def test_soft_targets_of_generated_rows_weigh_as_the_mlp_loss_does():
    y = np.array([0, 1, -1, -1, -1, -1])
    z = np.random.default_rng(0).normal(size=(6, 2))
    q = blended_targets(y, z, 2, 2.0, 0.25)
    soft = softmax(z / 2.0, axis=1)
    np.testing.assert_allclose(q[2:], 0.75 * soft[2:])
    np.testing.assert_allclose(q[:2], 0.25 * 3 * np.eye(2)[[0, 1]] + 0.75 * soft[:2])
    assert q.sum() == pytest.approx(len(y))
    # no generated rows: the study's targets, bit for bit
    y2 = np.array([0, 1, 1])
    np.testing.assert_array_equal(blended_targets(y2, z[:3], 2, 2.0, 0.25),
                                  0.25 * np.eye(2)[y2] + 0.75 * softmax(z[:3] / 2.0, axis=1))


class _Memorizer:
    """A teacher whose logit says whether it saw the row in training (+5 for class 1 if seen)."""

    def __init__(self):
        self.history_ = {"fit_seconds": 0.0}

    def fit(self, X, y, X_val, y_val, n_classes):
        self.seen = {row.tobytes() for row in X}
        return self

    fit_teacher = fit  # how out_of_fold_logits fits a fold teacher

    def logits(self, X):
        seen = np.array([row.tobytes() in self.seen for row in X], dtype=np.float32)
        return np.column_stack([np.zeros(len(X), np.float32), 5 * seen])


def test_out_of_fold_logits_never_come_from_a_model_trained_on_the_row():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4)).astype(np.float32)
    y = rng.integers(0, 2, 200)
    oof = out_of_fold_logits(lambda k: _Memorizer(), X, y, X[:10], y[:10], 2, 5, seed=0)
    assert np.all(oof.logits[:, 1] == 0)  # no row's logits came from a model that saw it
    assert sorted(np.bincount(oof.fold)) == [40] * 5  # stratified folds of equal size
    rare = np.r_[np.zeros(197, int), [1, 1, 1]]  # fewer rows of class 1 than folds: some fold models lack it
    oof = out_of_fold_logits(lambda k: _Memorizer(), X, rare, X, y, 2, 5, seed=0)
    assert np.all(oof.logits[:, 1] == 0) and (oof.fold >= 0).all()


def test_fixed_logits_refuse_other_rows():
    with pytest.raises(ValueError, match="holds the logits of 3 rows"):
        FixedLogits(np.zeros((3, 2))).logits(np.zeros((4, 5)))


def test_augmented_run_end_to_end(tmp_path, compose_cfg):
    """Through the protocol: the KD student trains on generated rows, the no-KD student never sees them (its
    figures equal those of the run without augmentation), and the run records what it did."""
    common = (*TINY, "dataset=breast_cancer", "teacher=gbt", "cache.enabled=false", "explain.enabled=false",
              "profile.enabled=false")
    plain = run(compose_cfg(*common), tmp_path / "plain")
    aug = run(compose_cfg(*common, "augment=munge", "augment.size_factor=2"), tmp_path / "aug")
    p, a = (r.metrics.set_index("model") for r in (plain, aug))
    columns = ["accuracy", "nll", "roc_auc", "brier", "teacher_kl", "val_accuracy", "epochs_run"]
    pd.testing.assert_series_equal(p.loc["student_nokd", columns], a.loc["student_nokd", columns])
    assert a.loc["student_kd", "generated_rows"] > 0
    assert a.loc["student_kd", "nll"] != p.loc["student_kd", "nll"]
    record = aug.summary["augment"]
    assert record["name"] == "munge" and record["rows_per_seed"][0]["rows"] == a.loc["student_kd", "generated_rows"]
    report, _ = write_report(aug.out_dir, figures=False)
    assert "the KD student also trained on" in report.read_text()


def test_out_of_fold_run_end_to_end(tmp_path, compose_cfg):
    common = (*TINY, "dataset=breast_cancer", "teacher=gbt", "student=tree", "explain.enabled=false",
              "profile.enabled=false")
    oof = run(compose_cfg(*common, "kd.soft_labels=oof", "kd.oof_folds=3"), tmp_path / "oof")
    insample = run(compose_cfg(*common), tmp_path / "in")
    assert oof.summary["kd"]["soft_labels"] == "oof" and oof.summary["kd"]["oof_folds"] == 3
    kd = oof.metrics.set_index("model").loc["student_kd"]
    assert kd["oof_teacher_seconds"] > 0
    # the teacher and the no-KD student are the same models; only the KD student's labels differ
    for model in ("teacher", "student_nokd"):
        assert oof.metrics.set_index("model").loc[model, "nll"] == insample.metrics.set_index("model").loc[model, "nll"]
    assert kd["nll"] != insample.metrics.set_index("model").loc["student_kd", "nll"]
    assert "out-of-fold teachers seed 0" in oof.summary["cache"]["computed"]


@pytest.mark.parametrize(("overrides", "message"), [
    (("kd=dkd", "dataset=wine_quality", "augment=spunge"), "augment=spunge with kd=dkd: DKD splits"),
    (("kd=label_smoothing", "augment=munge"), "augment=munge with kd=label_smoothing"),
    (("augment=spunge", "kd.alpha=1"), "kd.alpha=1: the teacher's term has weight 0"),
    (("kd=jacobian", "kd.soft_labels=oof"), "kd.soft_labels=oof with kd=jacobian"),
    (("kd.soft_labels=both",), "kd.soft_labels must be one of insample, oof"),
    (("kd.oof_folds=1",), "kd.oof_folds must be an integer >= 2"),
])
def test_what_cannot_be_done_is_refused_in_one_line(tmp_path, compose_cfg, overrides, message):
    with pytest.raises(ConfigError, match=message):
        run(compose_cfg(*TINY, *overrides), tmp_path / "r")


def test_breast_cancer_generation_has_no_categoricals():
    data = load_breast_cancer()
    sd = prepare_seed(data, 0, SPLIT)
    rows = _generate(Spunge(size_factor=1), data, sd)
    assert len(rows) > 0.9 * len(sd.split.train) and np.isfinite(rows.X).all()


def test_gap_recovered_interval():
    """Exact when every seed recovers the same share; None without a gap; and its delta-method interval covers
    the true share about as often as it says (simulation, paired variance factor)."""
    teacher, nokd = np.array([0.80, 0.82, 0.79, 0.81, 0.83]), np.array([0.70, 0.71, 0.72, 0.69, 0.73])
    kd = nokd + 0.4 * (teacher - nokd)
    out = gap_recovered(kd, nokd, teacher)
    assert out["recovered"] == pytest.approx(0.4) and out["low"] == pytest.approx(0.4)
    assert out["high"] == pytest.approx(0.4)
    assert gap_recovered(kd, teacher, nokd)["recovered"] is None  # "teacher" worse than the no-KD student
    rng = np.random.default_rng(0)
    covered = 0
    for _ in range(2000):
        base = rng.normal(0.7, 0.01, 8)
        gap = 0.1 + rng.normal(0, 0.005, 8)
        kd = base + 0.5 * gap + rng.normal(0, 0.005, 8)
        r = gap_recovered(kd, base, base + gap, confidence=0.9)
        covered += r["low"] <= 0.5 <= r["high"]
    assert 0.86 <= covered / 2000 <= 0.94


def test_augment_sweep_reports_every_setting(tmp_path):
    """+sweep=augment through the CLI: the report's augmentation table has each setting once (augment=none once
    whatever the size factor), its tests against the no-KD student and plain KD, and the gap recovered."""
    res = subprocess.run([sys.executable, "-m", "kdx", "run", "+sweep=augment", "+smoke=on", "seeds=[0,1,2]",
                          "dataset=breast_cancer", "teacher=gbt", "student=tree", "augment=none,spunge",
                          "augment.size_factor=1,2", "kd.oof_folds=3", "explain.enabled=false",
                          "profile.enabled=false", f"hydra.sweep.dir={tmp_path}"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    table = pd.read_csv(tmp_path / "report_augment.csv")
    settings = table[["augment", "size", "soft labels"]].astype(str).agg(" ".join, axis=1).tolist()
    assert settings == ["— (no KD) — —", "none — insample", "none — oof", "spunge 1 insample", "spunge 1 oof",
                        "spunge 2 insample", "spunge 2 oof"]
    assert table["chosen"].eq("✓").sum() == 1
    assert table["gap recovered"].iloc[1:].notna().all()
    stats = pd.read_csv(tmp_path / "report_augment_stats.csv")
    assert set(stats.versus) == {"no KD", "plain KD"}
    tested = stats[stats.p.notna()]  # (a difference that is the same on every seed has no p-value)
    assert len(tested) > 20 and tested.p_adjusted.notna().all()
    assert (tested.p_adjusted >= tested.p - 1e-12).all()  # Holm never lowers a p-value
    assert "## Augmentation and soft labels" in (tmp_path / "report.md").read_text()


def test_a_pretrained_teacher_labels_generated_rows_from_their_raw_values(tmp_path, compose_cfg):
    """A teacher read from a file scores generated rows from their raw values (not decoded encodings): its
    logits equal the library's own margins on those rows; out-of-fold labels fall back to in-sample, said."""
    xgb = pytest.importorskip("xgboost")
    from sklearn.datasets import load_breast_cancer as sk_breast_cancer

    from kdx.data.rows import load_data
    from kdx.run.artefacts import cache_for
    from kdx.run.checks import check_teacher
    from kdx.run.protocol import Protocol

    frame = sk_breast_cancer(as_frame=True)
    table = frame.data.assign(label=frame.target)
    table.to_csv(tmp_path / "bc.csv", index=False)
    booster = xgb.XGBClassifier(n_estimators=20, max_depth=3).fit(frame.data, frame.target)
    booster.save_model(tmp_path / "t.json")
    cfg = compose_cfg(*TINY, "dataset=csv", f"dataset.path={tmp_path / 'bc.csv'}", "dataset.target=label",
                      "teacher=pretrained", f"teacher.path={tmp_path / 't.json'}", "augment=spunge",
                      "kd.soft_labels=oof")
    data = load_data(cfg)
    protocol = Protocol(cfg, data, cache_for(cfg), check_teacher(cfg, data))
    assert "cannot be cross-fitted" in protocol.student_rows.notes[0] and not protocol.student_rows.out_of_fold
    sd = protocol.seed_rows(0)
    teacher, _ = protocol._fit("teacher", cfg.teacher, protocol.keys(0)["teacher"], 0, sd, "teacher")
    rows = protocol.student_rows.generated(sd, 0)
    z = protocol.student_rows.label_generated(teacher, rows)
    margin = booster.get_booster().predict(xgb.DMatrix(rows.frame[list(frame.data.columns)]), output_margin=True)
    np.testing.assert_allclose(z[:, 1] - z[:, 0], margin, atol=1e-5)


def test_a_file_of_unlabelled_rows_through_a_run(tmp_path, compose_cfg):
    """augment=rows end to end: the user's rows (their label column ignored) are labelled by the teacher and the
    KD student trains on them; a file without a feature column stops the run before any training."""
    frame = load_breast_cancer().X
    traffic = frame.sample(120, random_state=0).mul(1.01).assign(label="ignored")
    traffic.to_csv(tmp_path / "traffic.csv", index=False)
    common = (*TINY, "dataset=breast_cancer", "teacher=gbt", "explain.enabled=false", "profile.enabled=false")
    result = run(compose_cfg(*common, "augment=rows", f"augment.path={tmp_path / 'traffic.csv'}"), tmp_path / "r")
    assert result.metrics.set_index("model").loc["student_kd", "generated_rows"] == 120
    assert result.summary["augment"]["name"] == "rows"
    traffic.drop(columns=[frame.columns[0]]).to_csv(tmp_path / "broken.csv", index=False)
    with pytest.raises(DataError, match="lacks the dataset's feature column"):
        run(compose_cfg(*common, "augment=rows", f"augment.path={tmp_path / 'broken.csv'}"), tmp_path / "b")
    assert not (tmp_path / "b" / "checkpoints").exists()  # stopped at the door, before any seed's work


def test_an_undecided_cell_of_a_table_says_the_seeds_it_would_need():
    """The methods/augmentation tables' Holm marking: a significant Δ is starred; an undecided one carries the
    seeds that would detect it with 80 % power at α/m (kdx.analysis.stats.seeds_needed, computed here from its
    own figures), or says no number of re-split seeds would (the corrected variance's floor)."""
    from kdx.analysis.stats import paired_comparison, seeds_needed
    from kdx.analysis.tables import _mark_holm

    rng = np.random.default_rng(0)
    base = rng.normal(0.80, 0.01, 5)
    cases = {"clear": base + 0.05 + rng.normal(0, 0.002, 5), "small": base + 0.004 + rng.normal(0, 0.004, 5),
             "floor": base + 0.004 + rng.normal(0, 0.004, 5)}
    long, tests, rows = [], [], {}
    for name, values in cases.items():
        rows[name] = {}
        r = paired_comparison(base, values, test_train_ratio=0.2 if name == "floor" else 0.0, alpha=0.05)
        tests.append((len(long), rows[name], "Δ"))
        long.append(r)
    _mark_holm(tests, long, 0.05)
    assert rows["clear"]["Δ"].endswith("*)") and "seeds_needed" not in long[0]
    expected = seeds_needed(abs(long[1]["diff"]), long[1]["sd_diff"], 0.0, 0.05 / 3, 0.8)
    assert long[1]["seeds_needed"] == expected and f"≈ {expected} seeds" in rows["small"]["Δ"]
    assert long[2]["seeds_needed"] is None and "no number of seeds" in rows["floor"]["Δ"]
