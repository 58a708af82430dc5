"""What a run keeps: models and measurements in the cache (save/load), checkpoints and attributions in the
run folder, each written through a temporary name and a rename."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from kdx.data.rows import SeedData
from kdx.distill.labels import OutOfFold
from kdx.measure.explain import (
    ModelExplanation,
)
from kdx.models import Classifier, load_model
from kdx.store.cache import DONE, ArtifactCache
from kdx.store.persist import (
    RUN_FOLDER_ADVICE,
    atomic_file,
    cleaned_on_failure,
)

log = logging.getLogger("kdx")


def save_model(model: Classifier, folder: Path) -> None:
    model.save(folder / "model")


def save_labels(value: OutOfFold, folder: Path) -> None:
    np.savez(folder / "labels.npz", logits=value.logits, fold=value.fold, fit_seconds=value.fit_seconds)


def load_labels(folder: Path) -> OutOfFold:
    with np.load(folder / "labels.npz") as z:
        return OutOfFold(z["logits"], z["fold"], float(z["fit_seconds"]))


_LOADED: dict[tuple[str, str], Classifier] = {}  # models read from the cache in this process


_LOADED_KEEP = 8


def load_cached_model(folder: Path) -> Classifier:
    """The model of a cache entry (verified by the cache before this is called), read once per process:
    the jobs of a sweep in one process all read the seed's teacher (a 200-tree GBT: 0.05 s a read). Keyed
    by the entry's completion marker too, so a replaced entry is read again. Nothing writes to a loaded
    model (only a model being trained gets history entries)."""
    key = (str(folder), (folder / DONE).read_text())
    if key not in _LOADED:
        while len(_LOADED) >= _LOADED_KEEP:
            _LOADED.pop(next(iter(_LOADED)))
        _LOADED[key] = load_model(model_file(folder))
    return _LOADED[key]


def model_file(folder: Path) -> Path | None:
    """The file `save_model` wrote in a cache entry (its suffix is the model's format)."""
    return next((p for p in folder.iterdir() if p.stem == "model"), None)


def checkpoint(model: Classifier, folder: Path, name: str, cached: Path | None) -> Path:
    """`model` saved as `folder/name.<ext>`: a copy of its cache entry's file when it has one (the same
    bytes model.save wrote there; re-serializing a 200-tree GBT costs 0.05 s per job and seed), else saved."""
    source = None if cached is None else model_file(cached)
    if source is None:
        return save_atomically(model, folder, name)
    target = folder / f"{name}{source.suffix}"
    with atomic_file(target) as tmp:
        shutil.copyfile(source, tmp)
    return target


def save_measurement(value: tuple[dict, ModelExplanation | None], folder: Path) -> None:
    row, expl = value
    (folder / "row.json").write_text(json.dumps(row, default=float))
    if expl is not None:
        arrays = {"grouped": expl.grouped, "columns": expl.columns}
        if expl.val_grouped is not None:
            arrays["val_grouped"] = expl.val_grouped
        np.savez(folder / "explanation.npz", **arrays)
        (folder / "explanation.json").write_text(json.dumps({"metrics": expl.metrics, "explainer": expl.explainer}))


def load_measurement(folder: Path) -> tuple[dict, ModelExplanation | None]:
    row = json.loads((folder / "row.json").read_text())
    if not (folder / "explanation.npz").is_file():
        return row, None
    meta = json.loads((folder / "explanation.json").read_text())
    with np.load(folder / "explanation.npz") as z:
        expl = ModelExplanation(meta["metrics"], z["grouped"], z["columns"],
                                z["val_grouped"] if "val_grouped" in z else None, meta["explainer"])
    return row, expl


def save_atomically(model: Classifier, folder: Path, name: str) -> Path:
    """`model.save(folder / name)` through a temporary directory and a rename: a failed write (a full disk)
    leaves no truncated checkpoint that looks complete."""
    tmp = folder / f".{name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        with cleaned_on_failure(tmp, folder, f"the checkpoint {name}", RUN_FOLDER_ADVICE):
            written = model.save(tmp / name)
            target = folder / written.name
            os.replace(written, target)
            return target
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def save_attributions(path: Path, explanations: dict[str, ModelExplanation], classes: np.ndarray, sd: SeedData,
                      features: tuple[str, ...], players: str = "columns") -> None:
    """Per-row attributions of every model, per original feature and per player (`<model>_columns`: per
    encoded column, or per feature again in the feature game), compressed."""
    rows = len(classes)
    with atomic_file(path) as tmp:
        np.savez_compressed(
            tmp, players=np.asarray(players),
            feature_names=np.asarray(features),
            column_names=np.asarray(features if players == "features" else sd.preprocessor.columns_),
            test_rows=sd.split.test[:rows], output_class=classes,
            **{name: e.grouped.astype(np.float32) for name, e in explanations.items()},
            **{f"{name}_columns": e.columns for name, e in explanations.items()},
        )


def cache_for(cfg: DictConfig) -> ArtifactCache:
    node = cfg.get("cache") or {}
    return ArtifactCache(Path(str(node.get("dir"))).expanduser() if node.get("enabled", False) else None)

