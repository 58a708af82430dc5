"""What a finished run records: statistics, the trade-off score J and summary.json (written last, so a run
without it did not finish), and reading that record back to skip a run already complete."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from kdx.analysis.stats import StatsSettings, compare_models, split_ratio
from kdx.analysis.summary import sanity_warnings, summarize
from kdx.analysis.tradeoff import add_objective_terms, cost_columns_present, objective, terms_used
from kdx.config import seeds_of, stats_settings, units_of
from kdx.config.schema import SD_MARGINS
from kdx.data import TabularData
from kdx.environment import code_fingerprint, library_versions, machine
from kdx.models.outputs import resolve_output
from kdx.store.persist import (
    METRICS_FILE,
    OBJECTIVE_FILE,
    STATS_FILE,
    SUMMARY_FILE,
    write_csv,
    write_json,
)
from kdx.timing import peak_rss

log = logging.getLogger("kdx")


@dataclass
class RunResult:
    out_dir: Path
    metrics: pd.DataFrame
    summary: dict
    comparisons: pd.DataFrame


def finished(out_dir: Path, cfg: DictConfig, data_fingerprint: str) -> RunResult | None:
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


def finish(cfg: DictConfig, out_dir: Path, data: TabularData, rows: list[dict], protocol,
           order: list[int], parallel_jobs: int, started: float) -> RunResult:
    """Statistics, the objective J and summary.json of the finished seeds."""
    begun = time.perf_counter()
    seeds = units_of(cfg)
    metrics = pd.DataFrame(rows)
    ratio = split_ratio(protocol.split_sizes)
    settings = stats_settings(cfg)
    target_sd = float(np.std(data.y)) if data.regression else None
    if target_sd is not None:  # a regression's error margins are given in units of the target's sd
        settings["margins"] = {k: v * target_sd if k in SD_MARGINS else v for k, v in settings["margins"].items()}
    comparisons = compare_models(metrics, StatsSettings(**settings), ratio)
    write_csv(out_dir / STATS_FILE, comparisons)
    write_json(out_dir / "stats.json", comparisons.to_dict(orient="records"))
    profiles = OmegaConf.to_container(cfg.objective.profiles, resolve=True)
    scored = objective(add_objective_terms(metrics, tuple(cfg.objective.cost)), profiles)
    scored = objective(add_objective_terms(scored, tuple(cfg.objective.cost), prefix="val_"), profiles, "val_")
    objective_columns = ["seed", "model", "P", "C", "I", "val_P", "val_I",
                         *[c for c in scored.columns if c.startswith(("J_", "val_J_"))]]
    write_csv(out_dir / OBJECTIVE_FILE, scored[objective_columns])
    warnings = sanity_warnings(metrics, protocol.majority_accuracy)
    labels, augment = protocol.student_rows.record()
    for line in warnings:
        log.warning("%s", line)
    summary = {
        "complete": True,
        "data_fingerprint": protocol.base["data"],
        "code": protocol.base["code"],
        "dataset": {"name": data.name, "task": data.task, "rows": int(len(data.y)), "features": list(data.features),
                    **({"target": data.class_names[0], "target_mean": float(np.mean(data.y)), "target_sd": target_sd}
                       if data.regression else {}),
                    "classes": list(data.class_names), "class_counts": data.class_counts(), "source": data.source,
                    "column_notes": data.notes.get("columns", []),
                    "dropped_constant": data.notes.get("dropped_constant", [])},
        "seeds": seeds,
        "warnings": warnings,
        "majority_accuracy": {seed: protocol.majority_accuracy[seed] for seed in seeds
                              if seed in protocol.majority_accuracy},
        "split": {**protocol.split_args, "seeds": seeds_of(cfg), "units": len(seeds), "test_train_ratio": ratio},
        "split_sizes": {seed: protocol.split_sizes[seed] for seed in seeds},
        "kd": {"tau": protocol.tau, "alpha": protocol.alpha, "method": protocol.objective.name,
               "settings": protocol.objective.settings(), **labels},
        "augment": augment,
        "notes": list(protocol.student_rows.notes),
        "device": protocol.device,
        # Latencies of jobs that ran in parallel were measured while other jobs worked (see the README).
        "machine": {**machine(), "parallel_jobs": parallel_jobs, "seed_order": order,
                    "torch_threads_per_seed": protocol.threads,
                    "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")},
        "cache": {"dir": None if protocol.cache.root is None else str(protocol.cache.root),
                  "reused": protocol.cache.hits, "computed": protocol.cache.misses},
        "explain": None if protocol.explaining is None else {
            **_fields(protocol.explaining), "output_resolved": resolve_output(protocol.explaining.output,
                                                                             data.n_classes),
            "players_resolved": "features" if protocol.feature_game else "columns"},
        "teacher": None if not protocol.raw_teacher else {
            "pretrained": True, "path": str(Path(str(cfg.teacher.path)).expanduser().resolve()),
            "sha256": protocol.teacher_identity["path"]["sha256"], "features_read": list(protocol.teacher_columns),
            "format": protocol.teacher_format, "onnx": "not measured: kdx exports the models it trains"},
        "profile": None if protocol.profiling is None else {**_fields(protocol.profiling), "device": "cpu",
                                                            "onnx_resolved": protocol.deploying},
        "versions": library_versions(),
        "wall_seconds": time.perf_counter() - started,
        # Seconds per stage over all seeds (statistics: up to this summary); benchmarks/bench_stages.py.
        "stages": {**protocol.stages.seconds, "statistics and summary": time.perf_counter() - begun},
        # Bytes by which each stage raised the process's peak memory, and the peak itself (benchmarks/bench_scale).
        "stages_peak_growth": dict(protocol.stages.peak_growth), "peak_rss": peak_rss(),
        **summarize(metrics),
        "objective": {"cost": list(cfg.objective.cost),
                      "cost_used": cost_columns_present(metrics, tuple(cfg.objective.cost)),
                      "I_used": terms_used(scored)[1], "profiles": profiles,
                      "J": summarize(scored[objective_columns])["metrics"]},
        "stats": {**OmegaConf.to_container(cfg.stats, resolve=True), "test_train_ratio": ratio, "file": STATS_FILE,
                  **({"margins_used": settings["margins"]} if target_sd is not None else {})},
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    write_json(out_dir / SUMMARY_FILE, summary)
    return RunResult(out_dir, metrics, summary, comparisons)


def _fields(settings) -> dict:
    """A settings dataclass's values as summary.json records them (without the group's on/off switch)."""
    return {k: v for k, v in asdict(settings).items() if k != "enabled"}
