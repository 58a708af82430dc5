"""Where time goes and what the user sees while it goes: stage timing, progress display, profiling cost."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from kdx import progress
from kdx.timing import Stages


def test_stages_add_up_and_nest_without_double_counting():
    stages = Stages()
    seen = []
    stages.listener = seen.append
    with stages("outer"):
        time.sleep(0.05)
        with stages("inner"):
            assert stages.current == "inner"
            time.sleep(0.05)
        time.sleep(0.05)
    assert seen == ["outer", "inner"]
    assert 0.09 < stages.seconds["outer"] < 0.2 and 0.04 < stages.seconds["inner"] < 0.1


def test_stages_say_which_one_raised_the_peak_memory():
    """In a fresh interpreter (a test worker's earlier peak would hide new allocations): 400 MB touched inside
    `inner` count for `inner` only; 600 MB before it count for `outer`, less what the imports had already
    peaked at and freed."""
    code = ("import numpy as np; from kdx.timing import Stages; s = Stages()\n"
            "with s('outer'):\n    a = np.ones(75_000_000)\n    with s('inner'):\n        b = np.ones(50_000_000)\n"
            "print(s.peak_growth['outer'] / 2**20, s.peak_growth['inner'] / 2**20)")
    outer, inner = map(float, subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                             check=True).stdout.split())
    assert 360 < inner < 420 and 400 < outer < 600, (outer, inner)


def test_a_run_records_its_stages(tmp_path, compose_cfg):
    from kdx.run.protocol import run

    summary = run(compose_cfg("experiment=breast_cancer", "+smoke=on"), tmp_path).summary
    stages = summary["stages"]
    for name in ("data loading and checks", "split and preprocessing", "teacher training", "student training",
                 "fidelity metrics", "profiling", "SHAP and stability", "statistics and summary"):
        assert stages[name] > 0, name
    assert sum(stages.values()) <= summary["wall_seconds"] + stages["data loading and checks"] + 0.05
    assert set(summary["machine"]["torch_threads_per_seed"]) == {0, 1}


def test_progress_only_where_someone_watches(monkeypatch):
    class Pipe:
        def isatty(self):
            return False

    class Terminal:
        def isatty(self):
            return True

    for var in ("CI", "KDX_PROGRESS"):
        monkeypatch.delenv(var, raising=False)
    logger = progress.logging.getLogger("kdx")
    before = logger.level
    try:
        logger.setLevel("INFO")
        assert not progress.wanted(Pipe())
        assert progress.wanted(Terminal())
        monkeypatch.setenv("CI", "true")
        assert not progress.wanted(Terminal())
        monkeypatch.delenv("CI")
        logger.setLevel("ERROR")  # as under hydra/job_logging=disabled
        assert not progress.wanted(Terminal())
    finally:
        logger.setLevel(before)


def test_the_display_follows_stages_and_epochs(monkeypatch):
    from kdx.models.mlp import MLPClassifier

    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("KDX_PROGRESS", "1")
    stages = Stages()
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(64, 3)).astype(np.float32), rng.integers(0, 2, 64)
    with progress.display(2, "test", stages) as shown:
        with stages("teacher training"):
            MLPClassifier(hidden=[4], epochs=3, patience=5).fit(X, y, X, y, 2)
        doing = shown.progress.tasks[0].fields["doing"]
        shown.seed_done()
        assert shown.progress.tasks[0].completed == 1
    assert doing == "teacher training, epoch 3/3"
    assert progress._active is None and stages.listener is None


def test_the_first_profiled_model_is_not_charged_for_an_import():
    """torch's first dispatch mode imports torch._dynamo; under tracemalloc that import's allocations once
    counted as the first model's inference memory (61 MB for a model that needs 0.03 MB)."""
    code = """
import numpy as np
from kdx.measure.efficiency import ProfileSettings, profile_model
from kdx.models.mlp import MLPClassifier
X = np.random.default_rng(0).normal(size=(64, 5)).astype(np.float32)
y = (X[:, 0] > 0).astype(int)
model = MLPClassifier(hidden=[8], epochs=2).fit(X, y, X, y, 2)
settings = ProfileSettings(warmup=2, repeats=5, batch_size=16, onnx=False)
print(profile_model(model, X, settings)["peak_mb_1"], profile_model(model, X, settings)["peak_mb_1"])
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    first, second = map(float, out.stdout.split())
    assert first < 1.0 and first < 4 * second + 0.01, (first, second)


def test_checkpoints_are_the_cached_models_bytes_and_a_cached_model_is_read_once(tmp_path, compose_cfg):
    """A run with the cache on writes each checkpoint as a copy of its cache entry's file (no second
    serialization); a later job in the same process reads each cached model once; a replaced entry is
    read again."""
    from conftest import TINY

    import kdx.run.artefacts
    from kdx.models import load_model
    from kdx.run.artefacts import load_cached_model
    from kdx.run.protocol import run
    from kdx.store.cache import DONE

    cfg = compose_cfg("experiment=breast_cancer", *TINY, "profile.enabled=false", "explain.enabled=false")
    result = run(cfg, tmp_path / "a")
    seed_dir = tmp_path / "a" / "checkpoints" / "seed_0"
    models = Path(os.environ["KDX_CACHE"]) / "models"  # this test's own cache (conftest)
    entries = [p for p in models.iterdir() if (p / DONE).is_file()]
    cached = {next(p for p in e.iterdir() if p.stem == "model").read_bytes() for e in entries}
    X = np.random.default_rng(0).normal(size=(5, len(result.summary["dataset"]["features"])))  # all numeric
    for name in ("teacher", "student_nokd", "student_kd"):
        file = next(p for p in seed_dir.iterdir() if p.stem == name and not p.name.endswith(".txt"))
        assert file.read_bytes() in cached, name
        assert load_model(file).predict_proba(X).shape == (5, 2)
    kdx.run.artefacts._LOADED.clear()
    first = load_cached_model(entries[0])
    assert load_cached_model(entries[0]) is first  # read once
    (entries[0] / DONE).write_text((entries[0] / DONE).read_text() + " ")  # the entry was replaced
    assert load_cached_model(entries[0]) is not first
