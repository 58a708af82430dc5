"""The protocol: per seed, split → preprocess → teacher → no-KD and KD students → test metrics."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from kdx.building import build_dataset, build_model
from kdx.config import seeds_of, validate
from kdx.datasets import TabularData
from kdx.efficiency import ProfileSettings, profile_model, relative_to_teacher
from kdx.environment import library_versions, machine, seed_everything
from kdx.errors import ConfigError
from kdx.explain import AlignmentResult, ExplainSettings, align, resolve_output
from kdx.metrics import fidelity
from kdx.models.mlp import resolve_device
from kdx.objective import add_objective_terms, objective
from kdx.persist import (
    CONFIG_FILE,
    METRICS_FILE,
    OBJECTIVE_FILE,
    STATS_FILE,
    SUMMARY_FILE,
    write_csv,
    write_json,
    write_text,
)
from kdx.preprocess import Preprocessor
from kdx.split import Split, stratified_split
from kdx.stats import compare_models
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


@dataclass
class SeedData:
    split: Split
    preprocessor: Preprocessor
    X: dict[str, np.ndarray]
    y: dict[str, np.ndarray]


def prepare_seed(data: TabularData, seed: int, fractions: tuple[float, float, float]) -> SeedData:
    split = stratified_split(data.y, seed, fractions, data.class_names)
    pre = Preprocessor(data.numeric, data.categorical).fit(data.X.iloc[split.train])
    parts = {"train": split.train, "val": split.val, "test": split.test}
    X = {k: pre.transform(data.X.iloc[idx]) for k, idx in parts.items()}
    y = {k: data.y[idx] for k, idx in parts.items()}
    return SeedData(split, pre, X, y)


def save_attributions(path: Path, aligned: AlignmentResult, sd: SeedData, features: tuple[str, ...]) -> None:
    """Per-row attributions of every model, per original feature and per encoded column (compressed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path,
        feature_names=np.asarray(features), column_names=np.asarray(sd.preprocessor.columns_),
        test_rows=sd.split.test[aligned.rows], output_class=aligned.output_class,
        **{name: values.astype(np.float32) for name, values in aligned.grouped.items()},
        **{f"{name}_columns": values for name, values in aligned.columns.items()},
    )


def run(cfg: DictConfig, out_dir: Path) -> RunResult:
    """Run the whole protocol described by `cfg`, writing results and checkpoints under `out_dir`."""
    started = time.perf_counter()
    validate(cfg)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text(out_dir / CONFIG_FILE, OmegaConf.to_yaml(cfg, resolve=True))
    seeds = seeds_of(cfg)
    fractions = (cfg.split.train, cfg.split.val, cfg.split.test)
    device = str(resolve_device(cfg.device))
    tau, alpha = float(cfg.kd.tau), float(cfg.kd.alpha)

    profiling = ProfileSettings(
        threads=cfg.profile.threads, warmup=cfg.profile.warmup, repeats=cfg.profile.repeats,
        batch_size=cfg.profile.batch_size, memory=cfg.profile.memory,
    ) if cfg.profile.enabled else None

    explaining = ExplainSettings(**{k: v for k, v in cfg.explain.items() if k != "enabled"}) \
        if cfg.explain.enabled else None

    data = build_dataset(cfg.dataset)
    if cfg.limits.rows is not None:
        data = subsample(data, cfg.limits.rows)
    if explaining is not None and explaining.output == "margin" and data.n_classes != 2:
        raise ConfigError(f"explain.output=margin needs a binary task; {data.name} has {data.n_classes} classes "
                          "(use explain.output=centred)")
    log.info("%s: %d rows, %d features, %d classes %s", data.name, len(data.y), data.X.shape[1],
             data.n_classes, data.class_counts())

    rows: list[dict] = []
    splits: dict[int, dict[str, int]] = {}
    for seed in seeds:
        seed_everything(seed)
        sd = prepare_seed(data, seed, fractions)
        splits[seed] = sd.split.sizes()
        seed_dir = out_dir / "checkpoints" / f"seed_{seed}"
        seed_dir.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(seed_dir / "split.npz", train=sd.split.train, val=sd.split.val, test=sd.split.test)
        joblib.dump(sd.preprocessor, seed_dir / "preprocessor.joblib")

        teacher = build_model("teacher", cfg.teacher, seed, device, cfg.limits)
        teacher.fit(sd.X["train"], sd.y["train"], sd.X["val"], sd.y["val"], data.n_classes)
        # Soft targets: computed once per seed, shared by every distilled student.
        teacher_logits = teacher.logits(sd.X["train"])
        nokd = build_model("student", cfg.student, seed, device, cfg.limits)
        nokd.fit(sd.X["train"], sd.y["train"], sd.X["val"], sd.y["val"], data.n_classes)
        kd = build_model("student", cfg.student, seed, device, cfg.limits)
        kd.fit(sd.X["train"], sd.y["train"], sd.X["val"], sd.y["val"], data.n_classes,
               teacher_logits=teacher_logits, tau=tau, alpha=alpha)

        seed_rows = {}
        for name, model in zip(MODELS, (teacher, nokd, kd)):
            test = fidelity(model.logits(sd.X["test"]), sd.y["test"], cfg.metrics.ece_bins)
            val = fidelity(model.logits(sd.X["val"]), sd.y["val"], cfg.metrics.ece_bins)
            seed_rows[name] = {
                "seed": seed, "model": name, **test,
                **{f"val_{k}": v for k, v in val.items()},
                "train_seconds": model.history_["fit_seconds"],
                "epochs_run": model.history_.get("epochs_run"),
                "best_epoch": model.history_.get("best_epoch"),
                "params": model.n_params(),
                "teacher_agreement": float((model.predict(sd.X["test"]) == teacher.predict(sd.X["test"])).mean()),
            }
            if profiling is not None:
                start = time.perf_counter()
                seed_rows[name].update(profile_model(model, sd.X["test"], profiling, seed))
                seed_rows[name]["profile_seconds"] = time.perf_counter() - start
            if cfg.save_checkpoints:
                model.save(seed_dir / name)
            if hasattr(model, "rules"):
                write_text(seed_dir / f"{name}_rules.txt", model.rules(sd.preprocessor, data.class_names))
        if profiling is not None:
            for name in MODELS[1:]:
                seed_rows[name].update(relative_to_teacher(seed_rows[name], seed_rows["teacher"]))
        if explaining is not None:
            aligned = align(dict(zip(MODELS, (teacher, nokd, kd))), len(data.numeric), sd.preprocessor.group_columns,
                            sd.X["train"], sd.X["test"], explaining, seed, X_val=sd.X["val"])
            for name in MODELS:
                seed_rows[name].update(aligned.metrics[name])
                seed_rows[name]["explainer"] = aligned.explainers[name]
            save_attributions(out_dir / "attributions" / f"seed_{seed}.npz", aligned, sd, data.features)
        rows += seed_rows.values()
        # Rewritten after every seed: an interrupted run keeps the seeds it finished.
        write_csv(out_dir / METRICS_FILE, pd.DataFrame(rows))
        acc = {r["model"]: r["accuracy"] for r in rows if r["seed"] == seed}
        log.info("seed %d: accuracy teacher %.4f | student no-KD %.4f | student KD %.4f",
                 seed, acc["teacher"], acc["student_nokd"], acc["student_kd"])

    metrics = pd.DataFrame(rows)
    comparisons = compare_models(metrics, cfg.stats.alpha, cfg.stats.confidence)
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
        "dataset": {"name": data.name, "rows": int(len(data.y)), "features": list(data.features),
                    "classes": list(data.class_names), "class_counts": data.class_counts(), "source": data.source},
        "seeds": seeds,
        "split_sizes": splits,
        "kd": {"tau": tau, "alpha": alpha},
        "device": device,
        "machine": machine(),
        "explain": None if explaining is None else {
            **asdict(explaining), "output_resolved": resolve_output(explaining.output, data.n_classes)},
        "profile": None if profiling is None else {**asdict(profiling), "device": "cpu"},
        "versions": library_versions(),
        "wall_seconds": time.perf_counter() - started,
        **summarize(metrics),
        "objective": {"cost": list(cfg.objective.cost), "profiles": profiles,
                      "J": summarize(scored[objective_columns])["metrics"]},
        "stats": {"alpha": cfg.stats.alpha, "confidence": cfg.stats.confidence, "file": STATS_FILE},
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    write_json(out_dir / SUMMARY_FILE, summary)
    return RunResult(out_dir, metrics, summary, comparisons)
