"""The protocol: per seed, split → preprocess → teacher → no-KD and KD students → measurements.

Trained models and their measurements go through a content-addressed cache (kdx.cache): in a τ/α sweep
the teacher and the no-KD student are trained and measured once per (data, config, seed) and reused by
every grid point and later run; only the KD student, which τ and α change, is computed per point.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from kdx import progress
from kdx.building import build_dataset, build_model, build_objective
from kdx.cache import DONE, ArtifactCache, content_key
from kdx.config import seeds_of, split_settings, stats_settings, units_of, validate
from kdx.datasets import TabularData
from kdx.efficiency import ProfileSettings, cpu_threads, profile_model, relative_to_teacher
from kdx.environment import code_fingerprint, cpu_model, library_versions, machine, seed_everything
from kdx.errors import ConfigError, DataError, NotApplicable, TrainingError
from kdx.explain import (
    ExplainContext,
    ExplainSettings,
    ModelExplanation,
    compare,
    explain_model,
    reads_raw,
    resolve_output,
    resolve_players,
)
from kdx.metrics import SANITY_P, fidelity, label_sanity
from kdx.models import Classifier, load_model
from kdx.models.mlp import resolve_device
from kdx.models.stacked import StudentLoss, fit_stacked, stackable
from kdx.objective import add_objective_terms, cost_columns_present, objective, terms_used
from kdx.objectives.base import TeacherSignals
from kdx.persist import (
    CLASSES_FILE,
    CONFIG_FILE,
    METRICS_FILE,
    NOT_APPLICABLE_FILE,
    OBJECTIVE_FILE,
    RUN_FOLDER_ADVICE,
    STATS_FILE,
    SUMMARY_FILE,
    atomic_file,
    no_space,
    out_of_space,
    write_csv,
    write_json,
    write_text,
)
from kdx.preprocess import Preprocessor
from kdx.raw import RawCodec
from kdx.shapley import MAX_EXACT_COLUMNS
from kdx.split import Split, make_split
from kdx.stats import compare_models, split_ratio
from kdx.summary import sanity_warnings, summarize
from kdx.timing import Stages

log = logging.getLogger("kdx")
MODELS = ("teacher", "student_nokd", "student_kd")


@dataclass
class RunResult:
    out_dir: Path
    metrics: pd.DataFrame
    summary: dict
    comparisons: pd.DataFrame


def subsample(data: TabularData, rows: int, seed: int = 0) -> TabularData:
    """A stratified sample of about `rows` rows that keeps at least 3 rows of every class that has them."""
    if rows >= len(data.y):
        return data
    rng = np.random.default_rng(seed)
    keep = []
    for cls in np.unique(data.y):
        members = np.flatnonzero(data.y == cls)
        take = min(len(members), max(3, round(rows * len(members) / len(data.y))))
        keep.append(rng.choice(members, size=take, replace=False))
    idx = np.sort(np.concatenate(keep))
    return replace(data, X=data.X.iloc[idx].reset_index(drop=True), y=data.y[idx],
                   notes={**data.notes, "subsampled_rows": int(len(idx))})


def load_data(cfg: DictConfig) -> TabularData:
    """The dataset a run config names, with its `limits.rows` cap applied."""
    data = build_dataset(cfg.dataset)
    return data if cfg.limits.rows is None else subsample(data, cfg.limits.rows)


def fingerprint(data: TabularData) -> str:
    """SHA-256 of the rows, labels and column roles: any change in the data changes every cache key."""
    h = pd.util.hash_pandas_object(data.X, index=False).to_numpy().tobytes()
    return content_key(h.hex(), data.y.tobytes().hex(), data.class_names, data.numeric, data.categorical)


@dataclass
class SeedData:
    split: Split
    preprocessor: Preprocessor
    X: dict[str, np.ndarray]
    y: dict[str, np.ndarray]
    _test_feed: dict[str, np.ndarray] | None = None

    def test_feed(self, data: TabularData) -> dict[str, np.ndarray]:
        """The raw test rows as an exported model's onnxruntime inputs (kdx.deploy.schema), made once a seed."""
        if self._test_feed is None:
            from kdx.deploy.schema import Schema, raw_feed

            self._test_feed = raw_feed(data.X.iloc[self.split.test], Schema.of(self.preprocessor))
        return self._test_feed


_PREPARED: dict[str, SeedData] = {}  # the last few seeds prepared in this process, by content
_PREPARED_KEEP = 10


def seed_data(data: TabularData, data_key: str, seed: int, split_args: dict) -> SeedData:
    """`prepare_seed`, remembered in this process by (data fingerprint, split, seed): the jobs of a sweep that
    run in one process (basic launcher) split and encode each seed once, not once per job (Adult: 0.6 s a
    seed). The arrays are shared, so nothing may write to them (checked with read-only copies on every study
    pair; not made read-only here because torch warns about every read-only array it wraps)."""
    key = content_key(data_key, split_args, seed)
    if key not in _PREPARED:
        while len(_PREPARED) >= _PREPARED_KEEP:
            _PREPARED.pop(next(iter(_PREPARED)))
        _PREPARED[key] = prepare_seed(data, seed, split_args)
    return _PREPARED[key]


def prepare_seed(data: TabularData, seed: int, split_args: dict) -> SeedData:
    """Split (seed = the unit of kdx.config.units_of), preprocessing fitted on train, encoded parts."""
    split = make_split(data.y, seed, class_names=data.class_names, **split_args)
    pre = Preprocessor(data.numeric, data.categorical).fit(data.X.iloc[split.train])
    parts = {"train": split.train, "val": split.val, "test": split.test}
    X = {k: pre.transform(data.X.iloc[idx]) for k, idx in parts.items()}
    for part, values in X.items():
        bad = ~np.isfinite(values).all(axis=0)
        if bad.any():
            columns = [pre.columns_[j] for j in np.flatnonzero(bad)][:5]
            raise DataError(f"{data.name}: column(s) {columns} are not finite after standardization in the {part} "
                            "rows (values too large to scale, e.g. 1e308); clip or rescale them")
    y = {k: data.y[idx] for k, idx in parts.items()}
    return SeedData(split, pre, X, y)


def train_together(node: DictConfig, seed: int, device: str, limits: DictConfig, sd: SeedData, n_classes: int,
                   objectives: list, signals, names: list[str]) -> dict[int, Classifier]:
    """Students of one config node and seed, one per objective (None = no KD), trained in one stacked pass
    (kdx.models.stacked) when they can be: {index: fitted model}; {} when they cannot (then each trains
    alone). `signals(objective)`: that objective's teacher signals on the training rows, asked once per
    distinct `signals_key` (a τ/α grid's KD students share one)."""
    if len(objectives) < 2 or any(o is not None and not o.stacks for o in objectives):
        return {}
    models = [build_model("student", node, seed, device, limits) for _ in objectives]
    if not stackable(models):
        return {}
    computed = {}
    for o in objectives:
        if o is not None and o.signals_key() not in computed:
            computed[o.signals_key()] = signals(o)
    given = [None if o is None else computed[o.signals_key()] for o in objectives]
    losses = [StudentLoss() if o is None else o.stacked_loss(s) for o, s in zip(objectives, given)]
    teacher = next((s.rows["teacher_logits"] for s in given if s is not None and "teacher_logits" in s.rows), None)
    # The input-gradient terms' teacher signals (jacobian, attribution: the same teacher pass for both).
    matching = TeacherSignals({}, {})
    for loss, s in zip(losses, given):
        if loss.matching:
            matching.rows.update({k: v for k, v in s.rows.items() if k != "teacher_logits"})
            matching.constants.update(s.constants)
    fit_stacked(models, losses, sd.X["train"], sd.y["train"], sd.X["val"], sd.y["val"], n_classes, teacher,
                names=names, signals=matching if matching.rows else None)
    for name, model, loss in zip(names, models, losses):
        check_finite(model, sd, name)
        model.history_["resolved"] = loss.resolved
    return dict(enumerate(models))


def check_pretrained(teacher, sd: SeedData, data: TabularData, seed: int) -> dict:
    """A teacher read from a file, checked on the seed's validation rows before anything is distilled from it:
    one line and a stop where it is worse than always predicting the training majority class, or where its
    outputs in another order of the classes score better (sign tests at SANITY_P: the classes are read in the
    wrong order, or the model is not a model of this data)."""
    majority = int(np.bincount(sd.y["train"], minlength=data.n_classes).argmax())
    check = label_sanity(teacher.predict(sd.X["val"]), sd.y["val"], majority, data.n_classes)
    where = f"teacher.path={teacher.path.name} (seed {seed}, {len(sd.y['val'])} validation rows)"
    names = data.class_names
    if (check["mapping"] != np.arange(data.n_classes)).any() and check["p_permuted"] < SANITY_P:
        labels = getattr(teacher, "output_labels_", names)
        suggested = [names[check["mapping"][names.index(label)]] for label in labels]
        raise DataError(f"{where}: accuracy {check['accuracy']:.4f}, but {check['permuted_accuracy']:.4f} with its "
                        f"outputs read as other classes: its classes are likely in another order than kdx reads "
                        f"them ({list(labels)}); if the model's outputs are {suggested}, set teacher.classes="
                        f"[{', '.join(suggested)}]")
    if check["accuracy"] < check["majority_accuracy"] and check["p_below_majority"] < SANITY_P:
        raise DataError(f"{where}: accuracy {check['accuracy']:.4f}, below always predicting '{names[majority]}' "
                        f"({check['majority_accuracy']:.4f}): the model is likely not trained on this data, these "
                        "columns or this label coding; check teacher.path, the dataset and teacher.classes")
    return check


def check_finite(model: Classifier, sd: SeedData, label: str) -> None:
    """A trained model must give finite logits on the validation rows (one line naming it otherwise)."""
    if not np.all(np.isfinite(model.logits(sd.X["val"]))):
        raise TrainingError(f"{label}: the trained model gives non-finite logits on validation rows; "
                            "check for extreme values or lower the learning rate")


def _save_model(model: Classifier, folder: Path) -> None:
    model.save(folder / "model")


_LOADED: dict[tuple[str, str], Classifier] = {}  # models read from the cache in this process
_LOADED_KEEP = 8


def _load_model(folder: Path) -> Classifier:
    """The model of a cache entry (verified by the cache before this is called), read once per process:
    the jobs of a sweep in one process all read the seed's teacher (a 200-tree GBT: 0.05 s a read). Keyed
    by the entry's completion marker too, so a replaced entry is read again. Nothing writes to a loaded
    model (only a model being trained gets history entries)."""
    key = (str(folder), (folder / DONE).read_text())
    if key not in _LOADED:
        while len(_LOADED) >= _LOADED_KEEP:
            _LOADED.pop(next(iter(_LOADED)))
        _LOADED[key] = load_model(_model_file(folder))
    return _LOADED[key]


def _model_file(folder: Path) -> Path | None:
    """The file `_save_model` wrote in a cache entry (its suffix is the model's format)."""
    return next((p for p in folder.iterdir() if p.stem == "model"), None)


def checkpoint(model: Classifier, folder: Path, name: str, cached: Path | None) -> Path:
    """`model` saved as `folder/name.<ext>`: a copy of its cache entry's file when it has one (the same
    bytes model.save wrote there; re-serializing a 200-tree GBT costs 0.05 s per job and seed), else saved."""
    source = None if cached is None else _model_file(cached)
    if source is None:
        return save_atomically(model, folder, name)
    target = folder / f"{name}{source.suffix}"
    with atomic_file(target) as tmp:
        shutil.copyfile(source, tmp)
    return target


def _save_measurement(value: tuple[dict, ModelExplanation | None], folder: Path) -> None:
    row, expl = value
    (folder / "row.json").write_text(json.dumps(row, default=float))
    if expl is not None:
        arrays = {"grouped": expl.grouped, "columns": expl.columns}
        if expl.val_grouped is not None:
            arrays["val_grouped"] = expl.val_grouped
        np.savez(folder / "explanation.npz", **arrays)
        (folder / "explanation.json").write_text(json.dumps({"metrics": expl.metrics, "explainer": expl.explainer}))


def _load_measurement(folder: Path) -> tuple[dict, ModelExplanation | None]:
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
        written = model.save(tmp / name)
        target = folder / written.name
        os.replace(written, target)
        return target
    except Exception as exc:
        if out_of_space(exc, tmp):
            shutil.rmtree(tmp, ignore_errors=True)
            raise no_space(folder, f"the checkpoint {name}", RUN_FOLDER_ADVICE) from None
        raise
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


def resolve_threads(setting, parallel_jobs: int = 1) -> int:
    """torch/BLAS threads for this job: an explicit number, or (auto) the cores it may use divided among the
    jobs that run at the same time, and never more than the cores other processes leave idle: threads that
    wait for a core at every parallel region collapse throughput (measured: benchmarks/bench_load.py)."""
    if setting not in (None, "auto"):
        if isinstance(setting, bool) or not isinstance(setting, int) or setting < 1:
            raise ConfigError(f"threads must be a positive integer or auto, got {setting!r}")
        return setting
    return max(1, min(available_cores() // max(1, parallel_jobs), recently_idle_cores()))


IDLE_LOOK_EVERY = 10.0  # seconds: how stale a look at the machine's idle cores may be
_IDLE_SEEN: list[tuple[float, int]] = []  # this process's last look: (time.monotonic(), idle cores)


def recently_idle_cores() -> int:
    """`idle_cores()`, looked at again only when the last look is over IDLE_LOOK_EVERY seconds old: a look
    sleeps 0.1 s, and the 30 jobs of a sweep in one process start within seconds of each other."""
    now = time.monotonic()
    if not _IDLE_SEEN or now - _IDLE_SEEN[-1][0] > IDLE_LOOK_EVERY:
        _IDLE_SEEN[:] = [(now, idle_cores())]
    return _IDLE_SEEN[-1][1]


def idle_cores(interval: float = 0.1) -> int:
    """Cores the machine leaves idle now (Linux /proc/stat over `interval` seconds), at least 1; where that
    cannot be read, the cores this process may use."""
    def snapshot() -> tuple[int, int]:
        with open("/proc/stat") as fh:
            fields = [int(v) for v in fh.readline().split()[1:9]]
        return fields[3] + fields[4], sum(fields)  # idle + iowait, all

    try:
        idle0, total0 = snapshot()
        time.sleep(interval)
        idle1, total1 = snapshot()
    except (OSError, ValueError, IndexError):
        return available_cores()
    if total1 <= total0:
        return available_cores()
    return max(1, round((idle1 - idle0) / (total1 - total0) * (os.cpu_count() or 1)))


def available_cores() -> int:
    """The cores this process may use: its CPU affinity (a container's or taskset's limit), and within a
    Slurm job its allocation (SLURM_CPUS_PER_TASK; Slurm without cgroups does not pin the process)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    allocated = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if allocated.isdigit() and int(allocated) > 0:
        cores = min(cores, int(allocated))
    return max(1, cores)


def teacher_reads_raw(node: DictConfig) -> bool:
    """Whether the teacher a config names reads the dataset's raw columns (teacher=pretrained)."""
    from hydra.utils import get_class

    try:
        return getattr(get_class(str(node.get("_target_"))), "input_space", "encoded") == "raw"
    except Exception:  # noqa: BLE001 — an unknown target is reported when the teacher is built
        return False


def teacher_identity(node: DictConfig, pretrained=None) -> dict:
    """The teacher config as the cache keys it: a pretrained teacher by its file's content, not its path."""
    identity = OmegaConf.to_container(node, resolve=True)
    if pretrained is not None:
        identity["path"] = {"sha256": pretrained.sha256}
    return identity


def _settings(cls, node: DictConfig):
    """The settings dataclass a config node describes, or None when the node is switched off."""
    return cls(**{k: v for k, v in node.items() if k != "enabled"}) if node.enabled else None


class Protocol:
    """One run's settings and the per-seed work; `run()` below drives it over the seeds."""

    def __init__(self, cfg: DictConfig, data: TabularData, cache: ArtifactCache, pretrained=None,
                 stages: Stages | None = None):
        """`pretrained`: the teacher read from a file and checked against `data` (check_teacher), if any;
        `stages`: where the run's time per stage is summed."""
        self.cfg = cfg
        self.data = data
        self.cache = cache
        self.device = str(resolve_device(cfg.device))
        self.tau, self.alpha = float(cfg.kd.tau), float(cfg.kd.alpha)
        self.objective = build_objective(cfg.kd)
        self.split_args = split_settings(cfg)
        self.profiling = _settings(ProfileSettings, cfg.profile)
        self.deploying = self.profiling is not None and deploy_latency(self.profiling.onnx)
        self.explaining = _settings(ExplainSettings, cfg.explain)
        self.raw_teacher = pretrained is not None
        self.feature_game = resolve_players(cfg.explain.get("players", "auto"), self.raw_teacher) == "features"
        # A teacher reading raw columns gets each seed's rows as raw code rows (kdx.raw), encoded once.
        self.codec = None if pretrained is None else pretrained.codec
        self.codes = None if self.codec is None else self.codec.encode(data.X)
        self.teacher_identity = teacher_identity(cfg.teacher, pretrained)
        self.pretrained = pretrained  # read once per run, bound to each seed's rows
        self.teacher_columns: tuple[str, ...] = ()
        self.teacher_format = ""
        versions = library_versions()
        self.base = {
            "data": fingerprint(data), "dataset": OmegaConf.to_container(cfg.dataset, resolve=True),
            "split": self.split_args, "limits": OmegaConf.to_container(cfg.limits, resolve=True),
            "device": self.device, "versions": {k: versions[k] for k in ("kdx", "torch", "scikit-learn", "numpy")},
            "code": code_fingerprint(),
        }
        self.split_sizes: dict[int, dict[str, int]] = {}
        self.majority_accuracy: dict[int, float] = {}  # per seed: always predicting train's majority, on test
        self.stages = stages or Stages()
        self.threads: dict[int, int] = {}  # torch threads per seed (threads=auto follows the idle cores)
        self.measure_settings = {
            "metrics": OmegaConf.to_container(cfg.metrics), "cpu": cpu_model(),
            "profile": OmegaConf.to_container(cfg.profile), "explain": OmegaConf.to_container(cfg.explain),
            "onnxruntime": versions["onnxruntime"] if self.deploying else None,
        }

    def _fit(self, role: str, node: DictConfig, key: str, seed: int, sd: SeedData, label: str,
             signals=None, raw_parts: dict | None = None, trained: Classifier | None = None
             ) -> tuple[Classifier, bool]:
        """Train (or reuse from the cache) one model; `signals`: a callable giving the teacher's per-seed
        signals for the KD student (computed only when the student is actually trained). `raw_parts`: the
        seed's rows, encoded and raw, for a teacher that reads raw columns (not trained, not cached).
        `trained`: the model already trained (in a stacked pass), to be stored in the cache."""
        def compute() -> Classifier:
            if trained is not None:
                resolved = trained.history_.pop("resolved", {})
                if signals is not None:
                    trained.history_["objective"] = {**self.objective.settings(), **resolved}
                return trained
            if raw_parts is not None:  # read and checked once per run (check_teacher), given each seed's rows
                model = self.pretrained.bind(sd.preprocessor, raw_parts)
            else:
                model = build_model(role, node, seed, self.device, self.cfg.limits)
            kd = {} if signals is None else {"objective": self.objective, "signals": signals()}
            try:
                fitted = model.fit(sd.X["train"], sd.y["train"], sd.X["val"], sd.y["val"], self.data.n_classes,
                                   **kd)
            except TrainingError as exc:
                raise TrainingError(f"{label}: {exc}") from None
            check_finite(fitted, sd, label)
            if signals is not None:  # what the objective resolved from the data (e.g. label smoothing's ε)
                fitted.history_["objective"] = {**self.objective.settings(), **kd["signals"].resolved}
            return fitted

        if raw_parts is not None:  # the file is the model: nothing to train or cache
            return compute(), False
        return self.cache.get_or_compute("models", key, compute, _save_model, _load_model, label)

    def _measure(self, name: str, model: Classifier, teacher_pred: np.ndarray, sd: SeedData, seed: int,
                 ctx: ExplainContext | None, teacher_expl: ModelExplanation | None, profile_as: dict | None = None):
        """Fidelity, efficiency and alignment of one model. `profile_as`: the efficiency figures of a model of
        the same fixed compute graph (torch, same architecture) measured this seed, reused rather than timed
        again, so that every model of one architecture has the same latency (no timing noise in selections)."""
        bins = self.cfg.metrics.ece_bins
        with self.stages("fidelity metrics"):
            row = {
                "seed": seed, "model": name, **fidelity(model.logits(sd.X["test"]), sd.y["test"], bins),
                **{f"val_{k}": v for k, v in fidelity(model.logits(sd.X["val"]), sd.y["val"], bins).items()},
                "train_seconds": model.history_["fit_seconds"], "epochs_run": model.history_.get("epochs_run"),
                "best_epoch": model.history_.get("best_epoch"), "params": model.n_params(), "flops": model.flops(),
                # Students trained in one stacked pass (kdx.models.stacked): train_seconds is this one's share.
                "trained_together": model.history_.get("trained_together", 1),
                "teacher_agreement": float((model.predict(sd.X["test"]) == teacher_pred).mean()),
            }
        if self.profiling is not None and profile_as is not None:
            timed = ("latency_", "peak_mb", "model_mb", "ort_latency_")
            row.update({k: v for k, v in profile_as.items() if k.startswith(timed)},
                       profiled_as="student_nokd", size_bytes=model.size_bytes(), profile_seconds=0.0)
            if self.deploying:
                with self.stages("ONNX export and latency"):
                    row.update(self._deployed(model, sd, seed, timed=False))
        elif self.profiling is not None:
            start = time.perf_counter()
            with self.stages("profiling"):
                row.update(profile_model(model, sd.X["test"], self.profiling, seed))
            if self.deploying and not reads_raw(model):  # kdx exports the models it trains
                with self.stages("ONNX export and latency"):
                    row.update(self._deployed(model, sd, seed))
            row["profile_seconds"] = time.perf_counter() - start
        expl = None
        if ctx is not None:
            with self.stages("SHAP and stability"):
                expl = explain_model(model, ctx, sd.preprocessor.group_columns)
            row.update(expl.metrics, explainer=expl.explainer)
            if teacher_expl is not None:
                row.update(compare(teacher_expl, expl, ctx.top_k))
        return row, expl

    def _deployed(self, model: Classifier, sd: SeedData, seed: int, timed: bool = True) -> dict:
        """The model exported to ONNX with the seed's preprocessing: its parity gap with kdx on the raw test
        rows and (timed) its onnxruntime latency. A model that cannot be exported leaves the columns empty."""
        from kdx.deploy.runtime import PARITY_TOLERANCE, measure_deployed
        from kdx.errors import ExportError

        try:
            out = measure_deployed(model, sd.preprocessor, self.data.X.iloc[sd.split.test], self.profiling, seed,
                                   self.data.class_names, timed=timed, encoded=sd.X["test"],
                                   feed=sd.test_feed(self.data))
        except Exception as exc:  # noqa: BLE001 — an export failure must not cost the run its other results
            reason = str(exc) if isinstance(exc, ExportError) else f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
            log.warning("seed %d: no onnxruntime figures for a %s: %s", seed, type(model).__name__, reason)
            return {}
        if not out["onnx_parity"] <= PARITY_TOLERANCE:
            log.warning("seed %d: the ONNX export of a %s differs from kdx by up to %.3g (kdx export would refuse it)",
                        seed, type(model).__name__, out["onnx_parity"])
        return out

    def keys(self, seed: int) -> dict[str, str]:
        """Cache keys of the seed's three models: the KD student's adds the teacher's and the objective's."""
        base = {**self.base, "seed": seed}
        keys = {"teacher": content_key("teacher", base, self.teacher_identity)}
        keys["student_nokd"] = content_key("student_nokd", base,
                                           OmegaConf.to_container(self.cfg.student, resolve=True))
        keys["student_kd"] = content_key("student_kd", keys["student_nokd"], keys["teacher"],
                                         self.objective.settings())
        return keys

    def raw_parts(self, sd: SeedData) -> dict | None:
        """The seed's rows, encoded and as raw code rows, for a teacher that reads raw columns."""
        if not self.raw_teacher:
            return None
        rows_of = {"train": sd.split.train, "val": sd.split.val, "test": sd.split.test}
        return {part: (sd.X[part], self.codes[idx]) for part, idx in rows_of.items()}

    def teacher_signals(self, teacher: Classifier, sd: SeedData, objective=None):
        """The teacher's contribution to the KD student's loss (soft targets, gradients) on the train rows,
        for this run's objective or, in a stacked pass, another of its group's."""
        output = resolve_output(self.cfg.explain.output, self.data.n_classes)
        return (objective or self.objective).signals(teacher, sd.X["train"], sd.y["train"], self.data.n_classes,
                                                     sd.preprocessor.column_feature_, output)

    def fit_students(self, seed: int, sd: SeedData, teacher: Classifier,
                     keys: dict[str, str]) -> dict[str, tuple[Classifier, bool]]:
        """The no-KD and KD students (trained, or reused from the cache). When both must be trained and can
        be (kdx.models.stacked: same MLP, an objective with a stacked form), they train together in one pass."""
        node = self.cfg.student
        together = {}
        if self.cfg.get("train_together", True) and not any(self.cache.has("models", keys[k])
                                                              for k in ("student_nokd", "student_kd")):
            together = train_together(
                node, seed, self.device, self.cfg.limits, sd, self.data.n_classes,
                [None, self.objective], lambda o: self.teacher_signals(teacher, sd, o),
                [f"student_nokd seed {seed}", f"student_kd seed {seed}"])
        out = {"student_nokd": self._fit("student", node, keys["student_nokd"], seed, sd, f"student_nokd seed {seed}",
                                         trained=together.get(0))}
        out["student_kd"] = self._fit("student", node, keys["student_kd"], seed, sd, f"student_kd seed {seed}",
                                      lambda: self.teacher_signals(teacher, sd), trained=together.get(1))
        return out

    def run_seed(self, seed: int, seed_dir: Path) -> list[dict]:
        cfg, data = self.cfg, self.data
        seed_everything(seed)
        with self.stages("split and preprocessing"):
            sd = seed_data(data, self.base["data"], seed, self.split_args)
        columns = len(data.features) if self.feature_game else sd.X["train"].shape[1]
        if self.explaining is not None and self.explaining.method == "exact" and columns > MAX_EXACT_COLUMNS:
            # Before any training: one-hot encoding decides the column count.
            players = "original features" if self.feature_game else "encoded columns"
            raise ConfigError(f"explain.method=exact enumerates every coalition of the {players} and is "
                              f"limited to {MAX_EXACT_COLUMNS}; {data.name} has {columns}: use "
                              "explain.method=permutation")
        self.split_sizes[seed] = sd.split.sizes()
        majority = np.bincount(sd.y["train"], minlength=data.n_classes).argmax()
        self.majority_accuracy[seed] = float((sd.y["test"] == majority).mean())
        with atomic_file(seed_dir / "split.npz") as tmp:
            np.savez_compressed(tmp, train=sd.split.train, val=sd.split.val, test=sd.split.test)
        with atomic_file(seed_dir / "preprocessor.joblib") as tmp:
            joblib.dump(sd.preprocessor, tmp)
        keys = self.keys(seed)
        raw_parts = self.raw_parts(sd)
        with self.stages("teacher training"):
            teacher, reused_t = self._fit("teacher", cfg.teacher, keys["teacher"], seed, sd, f"teacher seed {seed}",
                                          raw_parts=raw_parts)
        if self.raw_teacher:
            self.teacher_columns, self.teacher_format = teacher.columns_, teacher.file.format
            check_pretrained(teacher, sd, data, seed)
        with self.stages("student training"):
            models = {"teacher": (teacher, reused_t), **self.fit_students(seed, sd, teacher, keys)}
        ctx = None
        if self.explaining is not None:
            with self.stages("SHAP and stability"):
                    ctx = ExplainContext.build(teacher, len(data.numeric), sd.X["train"], sd.X["test"], self.explaining,
                                           seed, X_val=sd.X["val"], column_feature=sd.preprocessor.column_feature_,
                                           raw=None if raw_parts is None else {k: v[1] for k, v in raw_parts.items()})
            if ctx.method != "auto":
                log.info("explain.method=%s on %d %s: %.3g model evaluations per model (seed %d)", ctx.method,
                         columns, "original features" if self.feature_game else "encoded columns",
                         ctx.model_evaluations(), seed)
            elif self.feature_game:
                log.info("explain.players=features: every model by permutation sampling over %d original features, "
                         "%.3g model evaluations per model (seed %d)", columns, ctx.model_evaluations(), seed)
        teacher_pred = teacher.predict(sd.X["test"])
        rows, explanations = {}, {}
        # KD and no-KD MLP students share one architecture: one latency measurement serves both.
        share = models["student_kd"][0].family == "torch" and models["student_nokd"][0].family == "torch"
        for name, (model, reused_model) in models.items():
            key = content_key("measure", keys[name], keys["teacher"], self.measure_settings)
            profile_as = rows["student_nokd"] if name == "student_kd" and share else None
            (row, expl), reused = self.cache.get_or_compute(
                "measurements", key,
                lambda n=name, m=model, p=profile_as: self._measure(n, m, teacher_pred, sd, seed, ctx,
                                                                    explanations.get("teacher"), p),
                _save_measurement, _load_measurement, f"{name} measurements seed {seed}")
            resolved = model.history_.get("objective", {}) if name == "student_kd" else {}
            rows[name] = {**row, "reused": bool(reused_model and reused),
                          "kd_method": self.objective.name if name == "student_kd" else "none",
                          **{f"kd_{k}": v for k, v in resolved.items()
                             if k not in ("name", "tau", "alpha") and isinstance(v, (int, float))}}
            if expl is not None:
                explanations[name] = expl
            if cfg.save_checkpoints:
                with self.stages("checkpoints"):
                    checkpoint(model, seed_dir, name, self.cache.entry("models", keys[name]))
            if hasattr(model, "rules"):
                write_text(seed_dir / f"{name}_rules.txt", model.rules(sd.preprocessor, data.class_names))
        if self.profiling is not None:
            for name in MODELS[1:]:
                rows[name].update(relative_to_teacher(rows[name], rows["teacher"]))
        if explanations:
            save_attributions(seed_dir.parent.parent / "attributions" / f"seed_{seed}.npz", explanations,
                              ctx.classes, sd, sd.preprocessor.feature_names_, ctx.players)
        return list(rows.values())


def _finished(out_dir: Path, cfg: DictConfig, data_fingerprint: str) -> RunResult | None:
    """The recorded result if `out_dir` already holds a complete run of exactly this config, on exactly this
    data, by this kdx code. Anything else (different data or code, a damaged file) is rerun."""
    file = out_dir / SUMMARY_FILE
    if not file.is_file():
        return None
    try:
        summary = json.loads(file.read_text())
        if not summary.get("complete") or summary.get("config") != OmegaConf.to_container(cfg, resolve=True):
            return None
        if summary.get("data_fingerprint") != data_fingerprint or summary.get("code") != code_fingerprint():
            log.warning("%s holds a complete run of this config on other data or by other kdx code: rerunning",
                        out_dir)
            return None
        return RunResult(out_dir, pd.read_csv(out_dir / METRICS_FILE), summary, pd.read_csv(out_dir / STATS_FILE))
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        log.warning("%s: recorded results are unreadable (%s): rerunning", out_dir, str(exc).splitlines()[0])
        return None


def check_objective(cfg: DictConfig, data: TabularData) -> None:
    """Refuse a distillation objective that does not apply to this task or these models, before any
    training (e.g. kd=dkd on a binary task, kd=jacobian with a tree teacher or student)."""
    build_objective(cfg.kd).check(data.n_classes, *model_families(cfg))


def model_families(cfg: DictConfig) -> tuple[str, str]:
    """The teacher's and the student's model family (torch, a booster's, ...), as the objectives check them."""
    return tuple(build_model(role, cfg[role], 0, "cpu", cfg.limits).family for role in ("teacher", "student"))


def check_teacher(cfg: DictConfig, data: TabularData):
    """A teacher that reads raw columns, read and checked against the data before any work (feature names or
    count, categorical columns, classes: one line naming the mismatch); None for a teacher kdx trains."""
    if teacher_reads_raw(cfg.student):
        raise ConfigError("student: a pretrained model can be the teacher, not the student (kdx trains students)")
    if not teacher_reads_raw(cfg.teacher):
        return None
    teacher = build_model("teacher", cfg.teacher, 0, "cpu", cfg.limits)
    return teacher.attach(data, RawCodec.of(data.X, data.numeric, data.categorical))


def deploy_latency(setting) -> bool:
    """Whether runs time the ONNX export: profile.onnx=true requires kdx[deploy]; auto uses it if installed."""
    from kdx import deploy

    if setting is True:
        deploy.require("profile.onnx=true")
    if setting == "auto" and not deploy.available():
        log.info("profile.onnx=auto: %s not installed, so no onnxruntime latency columns (pip install "
                 "'kdx[deploy]')", ", ".join(deploy.missing_packages()))
    return setting is True or (setting == "auto" and deploy.available())


def cache_for(cfg: DictConfig) -> ArtifactCache:
    node = cfg.get("cache") or {}
    return ArtifactCache(Path(str(node.get("dir"))).expanduser() if node.get("enabled", False) else None)


def seed_order(seeds: list[int], parallel_jobs: int, job_index: int) -> list[int]:
    """The order this job works through its seeds. Parallel jobs of a sweep start at different seeds, so
    they train different (cached, shared) teachers at once instead of waiting on each other's lock."""
    if parallel_jobs <= 1:
        return list(seeds)
    start = job_index % len(seeds)
    return list(seeds[start:]) + list(seeds[:start])


def run(cfg: DictConfig, out_dir: Path, parallel_jobs: int = 1, job_index: int = 0,
        concurrent_jobs: int | None = None) -> RunResult:
    """Run the whole protocol described by `cfg`, writing results and checkpoints under `out_dir`.

    A directory that already holds a complete run of the same config is returned as it is (resume).
    `parallel_jobs` (jobs sharing this machine's cores), `concurrent_jobs` (jobs running at once anywhere,
    e.g. a Slurm array's; default parallel_jobs) and `job_index` (this job's number in the sweep) set threads
    and the seed order; results do not depend on them."""
    validate(cfg)
    out_dir = Path(out_dir)
    stages = Stages()
    with stages("data loading and checks"):
        data = load_data(cfg)
        done = _finished(out_dir, cfg, fingerprint(data))
    if done is not None:
        log.info("%s already holds this run, complete: skipped", out_dir)
        done.summary["skipped"] = True
        return done
    try:
        with stages("data loading and checks"):
            check_objective(cfg, data)
    except ConfigError as exc:
        if cfg.get("on_inapplicable_objective", "fail") != "skip":
            raise
        # A methods sweep runs every objective; one that does not apply leaves a note, not a failure.
        write_text(out_dir / CONFIG_FILE, OmegaConf.to_yaml(cfg, resolve=True))
        write_text(out_dir / NOT_APPLICABLE_FILE, f"{exc}\n")
        raise NotApplicable(str(exc)) from None
    with cpu_threads(resolve_threads(cfg.get("threads", "auto"), parallel_jobs)):
        with stages("data loading and checks"):
            pretrained = check_teacher(cfg, data)
        order = seed_order(units_of(cfg), concurrent_jobs or parallel_jobs, job_index)
        return _run(cfg, out_dir, data, order, parallel_jobs, pretrained, stages)


def _run(cfg: DictConfig, out_dir: Path, data: TabularData, order: list[int], parallel_jobs: int = 1,
         pretrained=None, stages: Stages | None = None) -> RunResult:
    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / SUMMARY_FILE).unlink(missing_ok=True)
    write_text(out_dir / CONFIG_FILE, OmegaConf.to_yaml(cfg, resolve=True))
    seeds = units_of(cfg)
    if cfg.explain.enabled and cfg.explain.output == "margin" and data.n_classes != 2:
        raise ConfigError(f"explain.output=margin needs a binary task; {data.name} has {data.n_classes} classes "
                          "(use explain.output=centred)")
    log.info("%s: %d rows, %d features, %d classes %s", data.name, len(data.y), data.X.shape[1],
             data.n_classes, data.class_counts())
    for note in data.notes.get("columns", []):
        log.warning("%s: %s", data.name, note)
    cache = cache_for(cfg)
    protocol = Protocol(cfg, data, cache, pretrained, stages)
    write_json(out_dir / "checkpoints" / CLASSES_FILE, list(data.class_names))

    rows: list[dict] = []
    label = f"{data.name}: {cfg.teacher.name} → {cfg.student.name}"
    with progress.display(len(order), label, protocol.stages) as shown:
        for seed in order:
            # The machine may have got busier (or quieter): recently_idle_cores looks again once its last look
            # is IDLE_LOOK_EVERY seconds old (a look takes 0.1 s).
            if cfg.get("threads", "auto") in (None, "auto"):
                threads = resolve_threads("auto", parallel_jobs)
                if threads != torch.get_num_threads():
                    log.info("seed %d: %d torch thread(s), as the machine's idle cores changed", seed, threads)
                    torch.set_num_threads(threads)
            protocol.threads[seed] = torch.get_num_threads()
            rows = _seed(protocol, seed, out_dir, rows, seeds)
            if shown is not None:
                shown.seed_done()
    return _finish(cfg, out_dir, data, rows, protocol, order, parallel_jobs, started)


def _seed(protocol: Protocol, seed: int, out_dir: Path, rows: list[dict], seeds: list[int]) -> list[dict]:
    """One seed's models and measurements, added to `rows` and written to metrics.csv."""
    seed_dir = out_dir / "checkpoints" / f"seed_{seed}"
    seed_dir.mkdir(parents=True, exist_ok=True)
    seed_rows = protocol.run_seed(seed, seed_dir)
    rows = sorted(rows + seed_rows, key=lambda r: seeds.index(r["seed"]))  # stable: model order kept
    # Rewritten after every seed: an interrupted run keeps the seeds it finished.
    write_csv(out_dir / METRICS_FILE, pd.DataFrame(rows))
    acc = {r["model"]: r["accuracy"] for r in seed_rows}
    log.info("seed %d: accuracy teacher %.4f | student no-KD %.4f | student KD %.4f%s", seed, acc["teacher"],
             acc["student_nokd"], acc["student_kd"],
             " (reused: " + ", ".join(r["model"] for r in seed_rows if r["reused"]) + ")"
             if any(r["reused"] for r in seed_rows) else "")
    return rows


def _finish(cfg: DictConfig, out_dir: Path, data: TabularData, rows: list[dict], protocol: Protocol,
            order: list[int], parallel_jobs: int, started: float) -> RunResult:
    """Statistics, the objective J and summary.json of the finished seeds."""
    begun = time.perf_counter()
    seeds = units_of(cfg)
    metrics = pd.DataFrame(rows)
    ratio = split_ratio(protocol.split_sizes)
    comparisons = compare_models(metrics, stats_settings(cfg), ratio)
    write_csv(out_dir / STATS_FILE, comparisons)
    write_json(out_dir / "stats.json", comparisons.to_dict(orient="records"))
    profiles = OmegaConf.to_container(cfg.objective.profiles, resolve=True)
    scored = objective(add_objective_terms(metrics, tuple(cfg.objective.cost)), profiles)
    scored = objective(add_objective_terms(scored, tuple(cfg.objective.cost), prefix="val_"), profiles, "val_")
    objective_columns = ["seed", "model", "P", "C", "I", "val_P", "val_I",
                         *[c for c in scored.columns if c.startswith(("J_", "val_J_"))]]
    write_csv(out_dir / OBJECTIVE_FILE, scored[objective_columns])
    warnings = sanity_warnings(metrics, protocol.majority_accuracy)
    for line in warnings:
        log.warning("%s", line)
    summary = {
        "complete": True,
        "data_fingerprint": protocol.base["data"],
        "code": protocol.base["code"],
        "dataset": {"name": data.name, "rows": int(len(data.y)), "features": list(data.features),
                    "classes": list(data.class_names), "class_counts": data.class_counts(), "source": data.source,
                    "column_notes": data.notes.get("columns", []),
                    "dropped_constant": data.notes.get("dropped_constant", [])},
        "seeds": seeds,
        "warnings": warnings,
        "majority_accuracy": {seed: protocol.majority_accuracy[seed] for seed in seeds},
        "split": {**protocol.split_args, "seeds": seeds_of(cfg), "units": len(seeds), "test_train_ratio": ratio},
        "split_sizes": {seed: protocol.split_sizes[seed] for seed in seeds},
        "kd": {"tau": protocol.tau, "alpha": protocol.alpha, "method": protocol.objective.name,
               "settings": protocol.objective.settings()},
        "device": protocol.device,
        # Latencies of jobs that ran in parallel were measured while other jobs worked (see the README).
        "machine": {**machine(), "parallel_jobs": parallel_jobs, "seed_order": order,
                    "torch_threads_per_seed": protocol.threads,
                    "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")},
        "cache": {"dir": None if protocol.cache.root is None else str(protocol.cache.root),
                  "reused": protocol.cache.hits, "computed": protocol.cache.misses},
        "explain": None if protocol.explaining is None else {
            **asdict(protocol.explaining), "output_resolved": resolve_output(protocol.explaining.output,
                                                                             data.n_classes),
            "players_resolved": "features" if protocol.feature_game else "columns"},
        "teacher": None if not protocol.raw_teacher else {
            "pretrained": True, "path": str(Path(str(cfg.teacher.path)).expanduser().resolve()),
            "sha256": protocol.teacher_identity["path"]["sha256"], "features_read": list(protocol.teacher_columns),
            "format": protocol.teacher_format, "onnx": "not measured: kdx exports the models it trains"},
        "profile": None if protocol.profiling is None else {**asdict(protocol.profiling), "device": "cpu",
                                                            "onnx_resolved": protocol.deploying},
        "versions": library_versions(),
        "wall_seconds": time.perf_counter() - started,
        # Seconds per stage over all seeds (statistics: up to this summary); benchmarks/bench_stages.py.
        "stages": {**protocol.stages.seconds, "statistics and summary": time.perf_counter() - begun},
        **summarize(metrics),
        "objective": {"cost": list(cfg.objective.cost),
                      "cost_used": cost_columns_present(metrics, tuple(cfg.objective.cost)),
                      "I_used": terms_used(scored)[1], "profiles": profiles,
                      "J": summarize(scored[objective_columns])["metrics"]},
        "stats": {**OmegaConf.to_container(cfg.stats, resolve=True), "test_train_ratio": ratio, "file": STATS_FILE},
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    write_json(out_dir / SUMMARY_FILE, summary)
    return RunResult(out_dir, metrics, summary, comparisons)
