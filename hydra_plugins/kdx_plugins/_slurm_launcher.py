"""`hydra/launcher=slurm`: Hydra's submitit Slurm launcher, with what a sweep needs from kdx.

- The students of jobs that differ only in kd.* are trained together (kdx.run.grouping) by one Slurm job
  submitted before the job array, with the array's resources, into the shared cache (cache.dir on a
  filesystem every node sees); the array's jobs then find them there. The submitting machine trains
  nothing. If that job fails, the sweep goes on and each job trains its own students.

- It learns whether a job ended from `squeue` when `sacct` is unavailable. submitit asks `sacct`, which
  needs Slurm's accounting database; on a cluster without one (scripts/slurm-local.sh, many small clusters)
  a cancelled or killed job never produces a result and looks pending forever: the sweep would hang.
- A job that ends without a result (scancel, a node failure, the time limit) does not end the sweep in a
  traceback: kdx waits for the other jobs, writes the sweep report (which lists the job as missing) and
  stops with one line saying how to fill it in (the same command with hydra.sweep.dir=SWEEP; finished
  jobs are skipped).
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import time
from pathlib import Path

from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as SubmititSlurmLauncher
from omegaconf import OmegaConf
from submitit.slurm.slurm import SlurmInfoWatcher

log = logging.getLogger("kdx")
FINISHED = "NOT_IN_QUEUE"  # no longer known to squeue: ended (its result file tells how)


class QueueWatcher(SlurmInfoWatcher):
    """submitit's watcher, falling back to `squeue` (which every Slurm has) when `sacct` fails."""

    def update(self) -> None:
        command = self._make_command()
        if command is None:
            return
        self._num_calls += 1
        try:
            self._info_dict.update(self.read_info(subprocess.check_output(command, stderr=subprocess.DEVNULL)))
        except (OSError, subprocess.CalledProcessError):
            self._info_dict.update(self._from_squeue())
        self._last_status_check = time.time()

    def _from_squeue(self) -> dict[str, dict[str, str]]:
        """States of the registered jobs; a job squeue no longer lists (ended, purged) counts as finished."""
        pending = sorted(self._registered - self._finished)
        states: dict[str, dict[str, str]] = {}
        try:
            out = subprocess.run(["squeue", "-h", "-r", "--states=all", "-o", "%i|%T"], capture_output=True,
                                 text=True, timeout=60).stdout
            for line in out.splitlines():
                job_id, _, state = line.strip().partition("|")
                states[job_id] = {"JobID": job_id, "State": state}
        except (OSError, subprocess.TimeoutExpired):
            return {}  # no answer at all: ask again later rather than declare anything finished
        return {j: states.get(j, {"JobID": j, "State": FINISHED}) for j in pending}


class SlurmLauncher(SubmititSlurmLauncher):
    def launch(self, job_overrides, initial_job_idx):
        from submitit.core.utils import UncompletedJobError
        from submitit.slurm import slurm

        # submitit keeps one watcher per job class: this process's sweeps use the squeue fallback.
        slurm.SlurmJob.watcher = QueueWatcher(delay_s=60)
        self._prefit(job_overrides)
        try:
            return super().launch(job_overrides, initial_job_idx)
        except UncompletedJobError as exc:
            sweep = Path(str(self.config.hydra.sweep.dir))
            _wait_for_the_others(sweep)
            self._stop(sweep, exc)

    def _prefit(self, job_overrides) -> None:
        """The grouped pass (kdx.run.grouping.prefit_sweep) as one Slurm job with the array's resources; waits
        for it. Its failure is said in one line and leaves the students to the jobs."""
        import submitit

        from hydra_plugins.kdx_plugins.grouped_launchers import compose, record
        from kdx.run.grouping import prefit_sweep

        both = compose(self, job_overrides)
        if both is None or not both[1][0].cache.enabled:  # without a cache the jobs could not find them
            return
        # The executor as Hydra's launcher builds the array's (submitit_launcher.BaseSubmititLauncher.launch).
        executor = submitit.AutoExecutor(cluster="slurm", folder=self.params["submitit_folder"],
                                         slurm_max_num_timeout=self.params.get("max_num_timeout", 0))
        keys = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in keys else f"slurm_{k}": v for k, v in self.params.items()
                                      if k not in ("submitit_folder", "max_num_timeout")})
        executor.update_parameters(name="kdx-grouped-pass")
        job = executor.submit(prefit_sweep, both[1])
        log.info("Slurm job %s trains the students the sweep's jobs share (kdx.run.grouping)", job.job_id)
        try:
            record(self, job.result())
        except Exception as exc:  # noqa: BLE001 — the jobs can always train their own students
            state = re.search(r"state: ([A-Z_]+)", str(exc))
            why = f"state {state.group(1)}" if state else type(exc).__name__
            log.warning("kdx: the grouped pass (Slurm job %s) ended without a result (%s; its log: %s): each job "
                        "trains its own students", job.job_id, why, job.paths.stderr)

    def _stop(self, sweep: Path, exc: Exception) -> None:
        from kdx.analysis.report import write_report

        try:
            _, collection = write_report(sweep, figures=False)
            missing = "; ".join(collection.missing) or "a job"
        except Exception as report_exc:  # noqa: BLE001 — the one-line message matters more than the report
            missing = f"a job (report not written: {report_exc})"
        text = str(exc)
        job = re.search(r"Job (\S+)", text)
        state = re.search(r"state: ([A-Z_]+)", text)
        what = f"Slurm job {job.group(1) if job else '?'} ended without a result"
        if state:
            what += f" (state {state.group(1)})"
        if job:
            what += f"; its log: {sweep / '.submitit' / job.group(1)}"
        print(f"kdx: error: {what}. Missing: {missing}. The finished "
              f"jobs are in {sweep} (report.md lists what is missing); to fill it in, rerun the same command "
              f"with hydra.sweep.dir={sweep} (finished jobs are skipped)", file=sys.stderr)
        raise SystemExit(1)


def _wait_for_the_others(sweep: Path, poll_s: float = 2.0, limit_s: float = 7 * 24 * 3600) -> None:
    """Wait until no job of this sweep's arrays is queued or running, so its report holds every result."""
    arrays = {p.name.split("_")[0] for p in (sweep / ".submitit").glob("*_*") if p.is_dir()}
    if not arrays:
        return
    start = time.time()
    while time.time() - start < limit_s:
        out = subprocess.run(["squeue", "-h", "-r", "-o", "%i", "-j", ",".join(sorted(arrays))], capture_output=True,
                             text=True).stdout
        if not out.strip():
            return
        time.sleep(poll_s)
