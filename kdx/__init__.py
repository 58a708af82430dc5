"""kdx: what knowledge distillation buys on tabular data, measured over seeds."""

from importlib import metadata

try:
    __version__ = metadata.version("kdx")
except metadata.PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+unknown"

from kdx.kd import kd_loss  # noqa: E402
from kdx.loading import load_run  # noqa: E402

__all__ = ["__version__", "kd_loss", "load_run"]
