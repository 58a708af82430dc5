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
from dataclasses import asdict, dataclass
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from kdx.building import build_dataset, build_model, build_objective
from kdx.cache import ArtifactCache, content_key
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
from kdx.metrics import fidelity
from kdx.models import Classifier, load_model
from kdx.models.mlp import resolve_device
from kdx.objective import add_objective_terms, cost_columns_present, objective, terms_used
from kdx.persist import (
    CLASSES_FILE,
    CONFIG_FILE,
    METRICS_FILE,
    NOT_APPLICABLE_FILE,
    OBJECTIVE_FILE,
    STATS_FILE,
    SUMMARY_FILE,
    atomic_file,
    write_csv,
    write_json,
    write_text,
)
from kdx.preprocess import Preprocessor
from kdx.raw import RawCodec
from kdx.shapley import MAX_EXACT_COLUMNS
from kdx.split import Split, make_split
from kdx.stats import compare_models, split_ratio
from kdx.summary import summarize

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
    return TabularData(
        data.name, data.X.iloc[idx].reset_index(drop=True), data.y[idx], data.class_names,
        data.numeric, data.categorical, data.source, {**data.notes, "subsampled_rows": int(len(idx))},
    )


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


def _save_model(model: Classifier, folder: Path) -> None:
    model.save(folder / "model")


def _load_model(folder: Path) -> Classifier:
    return load_model(next(p for p in folder.iterdir() if p.stem == "model"))


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
    jobs that run at the same time, so parallel jobs never oversubscribe the machine."""
    if setting not in (None, "auto"):
        if isinstance(setting, bool) or not isinstance(setting, int) or setting < 1:
            raise ConfigError(f"threads must be a positive integer or auto, got {setting!r}")
        return setting
    return max(1, available_cores() // max(1, parallel_jobs))


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

    def __init__(self, cfg: DictConfig, data: TabularData, cache: ArtifactCache, pretrained=None):
        """`pretrained`: the teacher read from a file and checked against `data` (check_teacher), if any."""
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
        self.measure_settings = {
            "metrics": OmegaConf.to_container(cfg.metrics), "cpu": cpu_model(),
            "profile": OmegaConf.to_container(cfg.profile), "explain": OmegaConf.to_container(cfg.explain),
            "onnxruntime": versions["onnxruntime"] if self.deploying else None,
        }

    def _fit(self, role: str, node: DictConfig, key: str, seed: int, sd: SeedData, label: str,
             signals=None, raw_parts: dict | None = None) -> tuple[Classifier, bool]:
        """Train (or reuse from the cache) one model; `signals`: a callable giving the teacher's per-seed
        signals for the KD student (computed only when the student is actually trained). `raw_parts`: the
        seed's rows, encoded and raw, for a teacher that reads raw columns (not trained, not cached)."""
        def compute() -> Classifier:
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
            if not np.all(np.isfinite(fitted.logits(sd.X["val"]))):
                raise TrainingError(f"{label}: the trained model gives non-finite logits on validation rows; "
                                    "check for extreme values or lower the learning rate")
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
        row = {
            "seed": seed, "model": name, **fidelity(model.logits(sd.X["test"]), sd.y["test"], bins),
            **{f"val_{k}": v for k, v in fidelity(model.logits(sd.X["val"]), sd.y["val"], bins).items()},
            "train_seconds": model.history_["fit_seconds"], "epochs_run": model.history_.get("epochs_run"),
            "best_epoch": model.history_.get("best_epoch"), "params": model.n_params(), "flops": model.flops(),
            "teacher_agreement": float((model.predict(sd.X["test"]) == teacher_pred).mean()),
        }
        if self.profiling is not None and profile_as is not None:
            timed = ("latency_", "peak_mb", "model_mb", "ort_latency_")
            row.update({k: v for k, v in profile_as.items() if k.startswith(timed)},
                       profiled_as="student_nokd", size_bytes=model.size_bytes(), profile_seconds=0.0)
            if self.deploying:
                row.update(self._deployed(model, sd, seed, timed=False))
        elif self.profiling is not None:
            start = time.perf_counter()
            row.update(profile_model(model, sd.X["test"], self.profiling, seed))
            if self.deploying and not reads_raw(model):  # kdx exports the models it trains
                row.update(self._deployed(model, sd, seed))
            row["profile_seconds"] = time.perf_counter() - start
        expl = None
        if ctx is not None:
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
                                   self.data.class_names, timed=timed)
        except Exception as exc:  # noqa: BLE001 — an export failure must not cost the run its other results
            reason = str(exc) if isinstance(exc, ExportError) else f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
            log.warning("seed %d: no onnxruntime figures for a %s: %s", seed, type(model).__name__, reason)
            return {}
        if not out["onnx_parity"] <= PARITY_TOLERANCE:
            log.warning("seed %d: the ONNX export of a %s differs from kdx by up to %.3g (kdx export would refuse it)",
                        seed, type(model).__name__, out["onnx_parity"])
        return out

    def run_seed(self, seed: int, seed_dir: Path) -> list[dict]:
        cfg, data = self.cfg, self.data
        seed_everything(seed)
        sd = prepare_seed(data, seed, self.split_args)
        columns = len(data.features) if self.feature_game else sd.X["train"].shape[1]
        if self.explaining is not None and self.explaining.method == "exact" and columns > MAX_EXACT_COLUMNS:
            # Before any training: one-hot encoding decides the column count.
            players = "original features" if self.feature_game else "encoded columns"
            raise ConfigError(f"explain.method=exact enumerates every coalition of the {players} and is "
                              f"limited to {MAX_EXACT_COLUMNS}; {data.name} has {columns}: use "
                              "explain.method=permutation")
        self.split_sizes[seed] = sd.split.sizes()
        with atomic_file(seed_dir / "split.npz") as tmp:
            np.savez_compressed(tmp, train=sd.split.train, val=sd.split.val, test=sd.split.test)
        with atomic_file(seed_dir / "preprocessor.joblib") as tmp:
            joblib.dump(sd.preprocessor, tmp)
        base = {**self.base, "seed": seed}
        keys = {"teacher": content_key("teacher", base, self.teacher_identity)}
        keys["student_nokd"] = content_key("student_nokd", base, OmegaConf.to_container(cfg.student, resolve=True))
        keys["student_kd"] = content_key("student_kd", keys["student_nokd"], keys["teacher"],
                                         self.objective.settings())

        raw_parts = None
        if self.raw_teacher:
            rows_of = {"train": sd.split.train, "val": sd.split.val, "test": sd.split.test}
            raw_parts = {part: (sd.X[part], self.codes[idx]) for part, idx in rows_of.items()}
        teacher, reused_t = self._fit("teacher", cfg.teacher, keys["teacher"], seed, sd, f"teacher seed {seed}",
                                      raw_parts=raw_parts)
        if self.raw_teacher:
            self.teacher_columns, self.teacher_format = teacher.columns_, teacher.file.format
        models = {"teacher": (teacher, reused_t)}
        models["student_nokd"] = self._fit("student", cfg.student, keys["student_nokd"], seed, sd,
                                           f"student_nokd seed {seed}")
        # The teacher's signals (soft targets, gradients): computed once per seed, and only when needed.
        output = resolve_output(cfg.explain.output, data.n_classes)
        models["student_kd"] = self._fit(
            "student", cfg.student, keys["student_kd"], seed, sd, f"student_kd seed {seed}",
            lambda: self.objective.signals(teacher, sd.X["train"], sd.y["train"], data.n_classes,
                                           sd.preprocessor.column_feature_, output))
        ctx = None
        if self.explaining is not None:
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
                save_atomically(model, seed_dir, name)
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
    families = [build_model(role, cfg[role], 0, "cpu", cfg.limits).family for role in ("teacher", "student")]
    build_objective(cfg.kd).check(data.n_classes, *families)


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
    data = load_data(cfg)
    done = _finished(out_dir, cfg, fingerprint(data))
    if done is not None:
        log.info("%s already holds this run, complete: skipped", out_dir)
        done.summary["skipped"] = True
        return done
    try:
        check_objective(cfg, data)
    except ConfigError as exc:
        if cfg.get("on_inapplicable_objective", "fail") != "skip":
            raise
        # A methods sweep runs every objective; one that does not apply leaves a note, not a failure.
        write_text(out_dir / CONFIG_FILE, OmegaConf.to_yaml(cfg, resolve=True))
        write_text(out_dir / NOT_APPLICABLE_FILE, f"{exc}\n")
        raise NotApplicable(str(exc)) from None
    with cpu_threads(resolve_threads(cfg.get("threads", "auto"), parallel_jobs)):
        pretrained = check_teacher(cfg, data)
        order = seed_order(units_of(cfg), concurrent_jobs or parallel_jobs, job_index)
        return _run(cfg, out_dir, data, order, parallel_jobs, pretrained)


def _run(cfg: DictConfig, out_dir: Path, data: TabularData, order: list[int], parallel_jobs: int = 1,
         pretrained=None) -> RunResult:
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
    cache = cache_for(cfg)
    protocol = Protocol(cfg, data, cache, pretrained)
    write_json(out_dir / "checkpoints" / CLASSES_FILE, list(data.class_names))

    rows: list[dict] = []
    for seed in order:
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
    summary = {
        "complete": True,
        "data_fingerprint": protocol.base["data"],
        "code": protocol.base["code"],
        "dataset": {"name": data.name, "rows": int(len(data.y)), "features": list(data.features),
                    "classes": list(data.class_names), "class_counts": data.class_counts(), "source": data.source},
        "seeds": seeds,
        "split": {**protocol.split_args, "seeds": seeds_of(cfg), "units": len(seeds), "test_train_ratio": ratio},
        "split_sizes": {seed: protocol.split_sizes[seed] for seed in seeds},
        "kd": {"tau": protocol.tau, "alpha": protocol.alpha, "method": protocol.objective.name,
               "settings": protocol.objective.settings()},
        "device": protocol.device,
        # Latencies of jobs that ran in parallel were measured while other jobs worked (see the README).
        "machine": {**machine(), "parallel_jobs": parallel_jobs, "seed_order": order},
        "cache": {"dir": None if cache.root is None else str(cache.root), "reused": cache.hits,
                  "computed": cache.misses},
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
