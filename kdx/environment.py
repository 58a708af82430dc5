"""What a result depends on beyond its config: library versions, machine, seeding."""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import random
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

LIBRARIES = ("kdx", "torch", "numpy", "pandas", "scikit-learn", "scipy", "shap", "hydra-core", "omegaconf", "onnx",
             "onnxruntime", "skl2onnx", "xgboost", "xgboost-cpu", "lightgbm", "catboost")


PACKAGE_ROOT = Path(__file__).resolve().parent


@functools.cache
def code_fingerprint(root: Path = PACKAGE_ROOT) -> str:
    """SHA-256 over kdx's own source files: cached results are never reused across code changes, even
    when the version number stays the same (e.g. between commits)."""
    digest = hashlib.sha256()
    for file in sorted(root.rglob("*.py")):
        digest.update(str(file.relative_to(root)).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for lib in LIBRARIES:
        try:
            versions[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            versions[lib] = "not installed"
    return versions


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    info = {
        "cpu": cpu_model(), "logical_cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(), "cuda_available": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info
