"""Hydra configuration shipped as the package kdx.conf (pkg://kdx.conf)."""
