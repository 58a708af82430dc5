"""`hydra/launcher=slurm` (conf/hydra/launcher/slurm.yaml): kdx's Slurm launcher, in _slurm_launcher.py.

Hydra imports every module under hydra_plugins at start-up and prints a warning for each that fails to
import; the implementation needs kdx[parallel] (submitit), so without it this module defines nothing and
`kdx run` refuses hydra/launcher=slurm in one line naming the extra.
"""

try:
    from hydra_plugins.kdx_plugins._slurm_launcher import QueueWatcher, SlurmLauncher  # noqa: F401
except ImportError:
    pass
