"""Teacher reuse, cache invalidation, parallel safety, resume after SIGINT/SIGKILL, launchers."""

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from kdx.cli import parallel_jobs
from kdx.run.protocol import run
from kdx.run.resources import available_cores, resolve_threads, seed_order
from kdx.store.cache import ArtifactCache, content_key

SMALL = ("experiment=breast_cancer", "+smoke=on")


def test_teacher_and_baseline_are_reused_across_tau(tmp_path, compose_cfg):
    first = run(compose_cfg(*SMALL, "kd.tau=2"), tmp_path / "a").metrics.set_index(["seed", "model"])
    second = run(compose_cfg(*SMALL, "kd.tau=5"), tmp_path / "b").metrics.set_index(["seed", "model"])
    assert not first.reused.any()
    reused = second.reused.groupby(level="model").all()
    assert reused["teacher"] and reused["student_nokd"] and not second.reused.xs("student_kd", level="model").any()
    cols = ["accuracy", "nll", "params", "stability"]
    pd.testing.assert_frame_equal(first.loc[(slice(None), "teacher"), cols], second.loc[(slice(None), "teacher"), cols])
    summary = run(compose_cfg(*SMALL, "kd.tau=5"), tmp_path / "c").summary
    assert "teacher seed 0" in summary["cache"]["reused"] and "student_kd seed 0" in summary["cache"]["reused"]


@pytest.mark.parametrize("change", [["teacher.learning_rate=0.2"], ["limits.rows=350"],
                                    ["split.train=0.6", "split.test=0.25"], ["seeds=[0,7]"]])
def test_cache_is_invalidated_by_what_determines_the_teacher(tmp_path, compose_cfg, change):
    run(compose_cfg(*SMALL), tmp_path / "a")
    m = run(compose_cfg(*SMALL, *change), tmp_path / "b").metrics
    if change == ["seeds=[0,7]"]:  # seed 0 is the same teacher, seed 7 is new
        assert m[(m.seed == 0) & (m.model == "teacher")].reused.all()
        assert not m[(m.seed == 7) & (m.model == "teacher")].reused.any()
    else:
        assert not m.reused.any(), change


def test_disabled_cache_recomputes(tmp_path, compose_cfg):
    run(compose_cfg(*SMALL), tmp_path / "a")
    assert not run(compose_cfg(*SMALL, "cache.enabled=false"), tmp_path / "b").metrics.reused.any()


def _compute_once(root, log, barrier):
    barrier.wait()

    def compute():
        with open(log, "a") as fh:
            fh.write(f"{os.getpid()}\n")
        time.sleep(0.5)
        return "value"

    value, _ = ArtifactCache(root).get_or_compute(
        "kind", content_key("same"), compute, lambda v, d: (d / "v.txt").write_text(v),
        lambda d: (d / "v.txt").read_text())
    assert value == "value"


def test_parallel_requests_for_one_entry_compute_it_once(tmp_path):
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(3)
    procs = [ctx.Process(target=_compute_once, args=(tmp_path / "c", tmp_path / "log", barrier)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert len((tmp_path / "log").read_text().split()) == 1


def test_a_failed_computation_leaves_no_entry(tmp_path):
    cache = ArtifactCache(tmp_path)

    def boom():
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        cache.get_or_compute("k", "key", boom, lambda v, d: None, lambda d: None)
    assert cache.get_or_compute("k", "key", lambda: 1, lambda v, d: None, lambda d: 2) == (1, False)


def test_finished_run_is_skipped(tmp_path, compose_cfg):
    first = run(compose_cfg(*SMALL), tmp_path)
    mtime = (tmp_path / "summary.json").stat().st_mtime_ns
    again = run(compose_cfg(*SMALL), tmp_path)
    assert again.summary.get("skipped") and (tmp_path / "summary.json").stat().st_mtime_ns == mtime
    pd.testing.assert_frame_equal(first.metrics.reset_index(drop=True), again.metrics, check_dtype=False)
    assert not run(compose_cfg(*SMALL, "kd.alpha=0.3"), tmp_path).summary.get("skipped")


def test_threads_follow_the_launcher(monkeypatch):
    import kdx.run.resources

    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    monkeypatch.setattr(kdx.run.resources, "recently_idle_cores", lambda: 64)  # a quiet machine (tested below)
    cores = available_cores()
    assert cores == len(os.sched_getaffinity(0))
    assert resolve_threads("auto", 1) == cores and resolve_threads("auto", 2) == max(1, cores // 2)
    assert resolve_threads(3, 2) == 3
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")  # a Slurm job's allocation, even where it is not pinned
    assert available_cores() == 1 and resolve_threads("auto", 1) == 1
    monkeypatch.delenv("SLURM_CPUS_PER_TASK")
    joblib_launcher = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
    for n_jobs, expected in ((2, 2), (3, 3), (-1, cores)):
        assert parallel_jobs({"launcher": {"_target_": joblib_launcher, "n_jobs": n_jobs}}) == expected
    assert parallel_jobs({"launcher": {"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}}) == 1


def test_threads_never_exceed_the_idle_cores(monkeypatch):
    """Other processes busy on every core but one: threads=auto asks for one thread, whatever the jobs."""
    import subprocess as sp

    import kdx.run.resources

    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    monkeypatch.setattr(kdx.run.resources, "available_cores", lambda: 8)
    monkeypatch.setattr(kdx.run.resources, "recently_idle_cores", lambda: 1)
    assert resolve_threads("auto", 1) == 1 and resolve_threads(4, 1) == 4  # an explicit count is obeyed
    # idle_cores itself: with a busy process on each of the cores this process may use, fewer are idle.
    monkeypatch.undo()
    from kdx.run.resources import idle_cores

    cores = os.cpu_count() or 1
    busy = [sp.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cores)]
    try:
        time.sleep(0.5)
        assert idle_cores(0.5) <= max(1, cores // 2)
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()


def test_idle_cores_are_looked_at_again_only_when_the_last_look_is_stale(monkeypatch):
    """The jobs of a sweep in one process share a look at the machine younger than IDLE_LOOK_EVERY."""
    import kdx.run.resources

    looks = []
    monkeypatch.setattr(kdx.run.resources, "_IDLE_SEEN", [])
    monkeypatch.setattr(kdx.run.resources, "idle_cores", lambda: looks.append(1) or len(looks))
    assert kdx.run.resources.recently_idle_cores() == 1 and len(looks) == 1
    assert kdx.run.resources.recently_idle_cores() == 1 and len(looks) == 1  # still fresh: the same answer
    seen, cores = kdx.run.resources._IDLE_SEEN[0]
    kdx.run.resources._IDLE_SEEN[0] = (seen - kdx.run.resources.IDLE_LOOK_EVERY - 1, cores)  # as if 11 s had passed
    assert kdx.run.resources.recently_idle_cores() == 2 and len(looks) == 2  # stale: looked again


def _kdx(*args, **kw):
    # SIGINT back to its default in the child: started in the background by a shell without job control
    # (`cmd &` in a script), pytest and everything it starts inherit SIGINT ignored, and Python then never
    # raises KeyboardInterrupt (seen: the SIGINT test failed only when the suite ran in the background).
    return subprocess.Popen([sys.executable, "-m", "kdx", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **kw)


def _wait_for(path: Path, proc, timeout=300):
    start = time.time()
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() - start < timeout
        time.sleep(0.05)


@pytest.mark.slow
def test_parallel_jobs_start_at_different_seeds(tmp_path, compose_cfg):
    assert seed_order([0, 1, 2], 1, 5) == [0, 1, 2]  # one job at a time: natural order
    assert [seed_order([0, 1, 2], 2, k)[0] for k in range(4)] == [0, 1, 2, 0]
    assert sorted(seed_order([3, 7], 2, 1)) == [3, 7]
    # The order changes nothing in the results, and files list seeds in the configured order.
    cfg = compose_cfg(*SMALL, "seeds=[0,1,2]")
    run(cfg, tmp_path / "a")
    rotated = run(cfg, tmp_path / "b", parallel_jobs=2, job_index=1)
    assert rotated.summary["cache"]["reused"][0] == "teacher seed 1"  # started at seed 1, found it cached
    assert list(rotated.summary["split_sizes"]) == [0, 1, 2]
    assert rotated.summary["machine"]["parallel_jobs"] == 2 and rotated.summary["machine"]["seed_order"] == [1, 2, 0]
    cols = ["seed", "model", "accuracy", "nll", "stability", "cosine"]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "a" / "metrics.csv")[cols],
                                  pd.read_csv(tmp_path / "b" / "metrics.csv")[cols])


def test_sigkill_mid_sweep_then_resume(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["run", "-m", *SMALL, "seeds=[0,1]", "kd.tau=1,3,5", f"hydra.sweep.dir={sweep}"]
    proc = _kdx(*args)
    _wait_for(sweep / "1" / "metrics.csv", proc)  # job 0 done, job 1 half-way
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (sweep / "0" / "summary.json").exists() and not (sweep / "1" / "summary.json").exists()
    before = (sweep / "0" / "summary.json").stat().st_mtime_ns
    again = subprocess.run([sys.executable, "-m", "kdx", *args], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "complete: skipped" in again.stdout + again.stderr
    assert (sweep / "0" / "summary.json").stat().st_mtime_ns == before
    for job in range(3):
        m = pd.read_csv(sweep / str(job) / "metrics.csv")
        assert len(m) == 6 and not m.duplicated(["seed", "model"]).any()
    assert "3 complete run(s) of 3" in (sweep / "report.md").read_text()


@pytest.mark.slow
def test_sigint_mid_run_keeps_finished_seeds_and_resumes(tmp_path):
    out = tmp_path / "run"
    args = ["run", *SMALL, "seeds=[0,1,2,3]", f"hydra.run.dir={out}"]
    proc = _kdx(*args)
    _wait_for(out / "metrics.csv", proc)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "interrupted" in err
    assert not (out / "summary.json").exists()
    kept = pd.read_csv(out / "metrics.csv")
    again = subprocess.run([sys.executable, "-m", "kdx", *args], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    m = pd.read_csv(out / "metrics.csv")
    assert len(m) == 12 and not m.duplicated(["seed", "model"]).any()
    assert m[m.seed.isin(kept.seed)].reused.all()  # finished seeds came back from the cache


@pytest.mark.slow
@pytest.mark.parametrize("launcher", [["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
                                      ["hydra/launcher=submitit_local", "hydra.launcher.cpus_per_task=1"]])
def test_parallel_launchers(tmp_path, launcher):
    res = subprocess.run([sys.executable, "-m", "kdx", "run", "-m", *launcher, *SMALL, "seeds=[0]",
                          "kd.alpha=0.3,0.7", f"hydra.sweep.dir={tmp_path}"], capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr
    assert "2 complete run(s) of 2" in (tmp_path / "report.md").read_text()
    if "n_jobs=2" in launcher[1]:
        import json

        assert json.loads((tmp_path / "0" / "summary.json").read_text())["machine"]["torch_threads"] == \
            max(1, available_cores() // 2)


def test_code_fingerprint_follows_the_source(tmp_path):
    from kdx.environment import code_fingerprint

    (tmp_path / "a.py").write_text("x = 1\n")
    before = code_fingerprint(tmp_path)
    (tmp_path / "a.py").write_text("x = 2\n")
    code_fingerprint.cache_clear()
    assert code_fingerprint(tmp_path) != before
