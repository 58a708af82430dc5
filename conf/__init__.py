"""Hydra configuration shipped as the package kdx.conf (pkg://kdx.conf). Importing it stores the config's schema
(kdx.config.schema) in Hydra's ConfigStore, which config.yaml names first in its defaults."""

import kdx.config.schema  # noqa: F401
