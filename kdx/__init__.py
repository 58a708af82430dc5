"""kdx: what knowledge distillation buys on tabular data, measured over seeds."""

from importlib import metadata

try:
    __version__ = metadata.version("kdx")
except metadata.PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+unknown"

__all__ = ["__version__", "kd_loss", "load_run"]


def __getattr__(name: str):
    # Imported on first use: torch and scikit-learn take seconds to import, and the command line (the
    # parent process of a parallel sweep, `kdx report`, `kdx --help`) does not need them.
    if name == "kd_loss":
        from kdx.models.losses import kd_loss

        return kd_loss
    if name == "load_run":
        from kdx.run.loading import load_run

        return load_run
    raise AttributeError(f"module 'kdx' has no attribute {name!r}")
