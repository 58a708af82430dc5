"""kdx's default launchers: Hydra's basic and joblib launchers that first train together the students of
jobs differing only in kd.* (kdx.grouping), then run every job exactly as Hydra would.

`hydra/launcher=grouped` (the default) and `hydra/launcher=joblib` name them (conf/hydra/launcher; the
joblib one is in joblib_launcher.py, which needs kdx[parallel]); `train_together=false` turns grouping off.
On Slurm each job trains its own students: a group's pass would otherwise run on the submitting machine.
"""

from __future__ import annotations

from pathlib import Path

from hydra._internal.core_plugins.basic_launcher import BasicLauncher as HydraBasicLauncher
from omegaconf import open_dict


def prefit(launcher, job_overrides) -> None:
    """Compose every job's config as the launcher will, and train the students the jobs share."""
    if not launcher.config.get("train_together", True) or len(job_overrides) < 2:
        return
    from kdx.grouping import prefit_sweep
    from kdx.persist import write_json

    configs = []
    for overrides in job_overrides:
        cfg = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, list(overrides))
        with open_dict(cfg):
            del cfg["hydra"]
        configs.append(cfg)
    records = prefit_sweep(configs)
    if records:  # the sweep report reads it
        write_json(Path(launcher.config.hydra.sweep.dir) / "trained_together.json", records)


class BasicLauncher(HydraBasicLauncher):
    def launch(self, job_overrides, initial_job_idx):
        prefit(self, job_overrides)
        return super().launch(job_overrides, initial_job_idx)

