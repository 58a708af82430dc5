"""`hydra/launcher=joblib`: Hydra's joblib launcher that first trains together the students of jobs differing
only in kd.* (kdx.run.grouping; see grouped_launchers.py).

Without kdx[parallel] (hydra-joblib-launcher) this module defines nothing, so Hydra's start-up scan of the
plugins stays quiet, and `kdx run` refuses hydra/launcher=joblib in one line naming the extra.
"""

from __future__ import annotations

from hydra_plugins.kdx_plugins.grouped_launchers import prefit

try:
    from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher as _HydraJoblibLauncher
except ImportError:
    _HydraJoblibLauncher = None

if _HydraJoblibLauncher is not None:

    class JoblibLauncher(_HydraJoblibLauncher):
        def launch(self, job_overrides, initial_job_idx):
            prefit(self, job_overrides)
            return super().launch(job_overrides, initial_job_idx)
