"""A τ sweep through hydra/launcher=slurm against a real Slurm controller (scripts/slurm-local.sh start):
the students the jobs share trained by one Slurm job before the array, both jobs scheduled by Slurm, one
artifact cache shared between them, the sweep report written; a job cancelled with scancel is reported as
missing in one line, and rerunning the same command fills it in; a cancelled grouped pass leaves the
students to the jobs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest


def _controller() -> str | None:
    """Why the test cannot run here, or None."""
    if shutil.which("sbatch") is None:
        return "sbatch not found (scripts/slurm-local.sh start installs and starts a one-node cluster)"
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True)
    return None if "UP" in ping.stdout else "no Slurm controller answers (scripts/slurm-local.sh start)"


REASON = _controller()
pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.skipif(REASON is not None, reason=REASON or "")]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """One artifact cache for both tests: the second one's jobs reuse the first one's models (faster)."""
    return tmp_path_factory.mktemp("slurm-cache")


def _sweep(tmp_path: Path, name: str, cache: Path) -> list[str]:
    return [sys.executable, "-m", "kdx", "run", "-m", "hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1",
            "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=10", "+smoke=on", "kd.tau=2,4",
            "profile.repeats=5", f"cache.dir={cache}", f"hydra.sweep.dir={tmp_path / name}"]


def _cancel_when(process: subprocess.Popen, find, limit_s: float = 300) -> str | None:
    """Poll `find()` for a Slurm job id while the sweep runs; scancel the first one found and return it."""
    deadline = time.time() + limit_s
    while time.time() < deadline and process.poll() is None:
        job = find()
        if job is not None:
            subprocess.run(["scancel", job], check=True)
            return job
        time.sleep(0.1)
    return None


def _summaries(sweep: Path) -> list[dict]:
    return [json.loads((sweep / str(k) / "summary.json").read_text()) for k in (0, 1)]


def test_slurm_sweep_shares_the_cache_and_writes_the_report(tmp_path, cache):
    done = subprocess.run(_sweep(tmp_path, "sweep", cache), capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    sweep = tmp_path / "sweep"
    # Both jobs ran as tasks of one Slurm job array: submitit's per-task logs name the Slurm job id.
    logs = sorted((sweep / ".submitit").glob("*_*/*_0_log.out"))
    assert len(logs) == 2 and all("job_id=" in p.read_text() for p in logs)
    # Before them, one Slurm job (not an array task) trained the teacher and the students the jobs share.
    folders = [p for p in (sweep / ".submitit").iterdir() if p.is_dir()]
    arrays = {p.name.split("_")[0] for p in folders if "_" in p.name}
    grouped = [p for p in folders if "_" not in p.name and p.name not in arrays]
    assert len(grouped) == 1 and list(grouped[0].glob("*_result.pkl")), sorted(folders)
    (group,) = json.loads((sweep / "trained_together.json").read_text())
    assert group["students_per_pass"] == [3, 3]  # per seed: the no-KD student and each job's KD student
    summaries = _summaries(sweep)
    assert all(s["complete"] for s in summaries)
    # One cache on the shared filesystem: every model was trained once, by the grouped pass, and found there.
    for s in summaries:
        assert not [label for label in s["cache"]["computed"] if "measurements" not in label], s["cache"]
        assert {"teacher seed 0", "teacher seed 1", "student_kd seed 0"} <= set(s["cache"]["reused"])
    assert "2 complete run(s) of 2 found" in (sweep / "report.md").read_text()


def test_a_cancelled_grouped_pass_leaves_the_students_to_the_jobs(tmp_path):
    process = subprocess.Popen(_sweep(tmp_path, "sweep", tmp_path / "cache"), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=tmp_path)

    def grouped_pass() -> str | None:
        found = subprocess.run(["squeue", "-h", "-n", "kdx-grouped-pass", "-o", "%i"], capture_output=True,
                               text=True).stdout.split()
        return found[0] if found else None

    cancelled = _cancel_when(process, grouped_pass)
    stdout, stderr = process.communicate(timeout=600)
    assert cancelled is not None, "the grouped pass never appeared in the queue"
    assert process.returncode == 0, stderr[-3000:]
    assert f"the grouped pass (Slurm job {cancelled}) ended without a result" in stdout + stderr
    summaries = _summaries(tmp_path / "sweep")
    assert all(s["complete"] for s in summaries)
    computed = [label for s in summaries for label in s["cache"]["computed"] if label.startswith("student_kd seed")]
    assert sorted(computed) == ["student_kd seed 0", "student_kd seed 0", "student_kd seed 1", "student_kd seed 1"]


def test_a_cancelled_job_is_reported_missing_and_a_rerun_fills_it_in(tmp_path, cache):
    sweep = tmp_path / "sweep"
    process = subprocess.Popen(_sweep(tmp_path, "sweep", cache), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, cwd=tmp_path)

    def second_job_running() -> str | None:
        ours = {p.name for p in (sweep / ".submitit").glob("*_*")} if (sweep / ".submitit").is_dir() else set()
        queue = subprocess.run(["squeue", "-h", "-r", "-o", "%i %t"], capture_output=True, text=True).stdout.split("\n")
        running = [line.split()[0] for line in queue if line.endswith(" R") and line.split()[0] in ours]
        return next((j for j in running if j.endswith("_1")), None)

    cancelled = _cancel_when(process, second_job_running)
    _, stderr = process.communicate(timeout=600)
    assert cancelled is not None, "job 1 never ran"
    assert process.returncode == 1
    lines = [line for line in stderr.splitlines() if line.startswith("kdx: error:")]
    assert len(lines) == 1 and f"Slurm job {cancelled} ended without a result" in lines[0], stderr[-3000:]
    assert f"hydra.sweep.dir={sweep}" in lines[0]
    report = (sweep / "report.md").read_text()
    assert "1 complete run(s)" in report and "**Missing or incomplete**" in report and "- job 1 (" in report
    # The same command again: the finished job is skipped, the cancelled one runs
    again = subprocess.run(_sweep(tmp_path, "sweep", cache), capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert all(s["complete"] for s in _summaries(sweep))
    assert "2 complete run(s) of 2 found" in (sweep / "report.md").read_text()
