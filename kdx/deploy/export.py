"""`kdx export`: one model of a finished run as model.onnx + model_card.md/json, parity-checked on the run's
own test rows before anything is written."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from kdx import deploy
from kdx.data.rows import fingerprint, load_data
from kdx.deploy.card import build_card, write_card
from kdx.deploy.graph import ML_OPSET, OPSET
from kdx.deploy.runtime import PARITY_TOLERANCE, DeployedModel, check_parity, export_model, time_deployed
from kdx.deploy.schema import Schema
from kdx.errors import DataError
from kdx.measure.efficiency import ProfileSettings
from kdx.store.persist import atomic_file, write_text

EXPORTABLE = ("student_kd", "student_nokd", "teacher")


@dataclass
class Exported:
    folder: Path
    onnx: Path
    card: dict


def export_run(run, seed: int | None = None, model: str = "student_kd", out: Path | None = None,
               tolerance: float | None = None) -> Exported:
    """Export `model` of `seed` (default: the run's first seed) from a LoadedRun to `out` (default:
    RUN_DIR/export/seed_S/MODEL)."""
    deploy.require("kdx export")
    tolerance = PARITY_TOLERANCE if tolerance is None else tolerance
    if model not in EXPORTABLE:
        raise DataError(f"--model must be one of {', '.join(EXPORTABLE)}, got {model!r}")
    if not run.complete:
        raise DataError(f"{run.path} is not a complete run (no complete summary.json): finish or rerun it first")
    seed = run.seeds[0] if seed is None else seed
    summary = run.summary
    data = load_data(run.config)
    if fingerprint(data) != summary.get("data_fingerprint"):
        raise DataError(f"the dataset {run.config.dataset.name} differs from the one {run.path} was trained on "
                        "(data fingerprint): the parity check needs the run's own test rows")
    fitted, pre = run.model(model, seed), run.preprocessor(seed)
    rows = data.X.iloc[run.split(seed).test]
    metadata = {"kdx_model": model, "kdx_seed": str(seed), "kdx_dataset": data.name,
                "kdx_data_fingerprint": summary["data_fingerprint"]}
    onnx_bytes = export_model(fitted, pre, run.class_names, metadata)
    schema = Schema.of(pre)
    settings = ProfileSettings(**run.config.profile)
    deployed = DeployedModel(onnx_bytes, schema, threads=settings.threads)
    gap = check_parity(deployed, fitted, pre, rows, tolerance)

    recorded = run.metrics[(run.metrics.seed == seed) & (run.metrics.model == model)]
    latency_keys = [f"{p}latency_{k}" for p in ("", "ort_") for k in
                    ("ms", "median_ms", "p95_ms", "batch_ms", "batch_median_ms", "batch_p95_ms", "per_row_ms")]
    if len(recorded) and "ort_latency_ms" in recorded and pd.notna(recorded["ort_latency_ms"].iloc[0]):
        latency = {k: float(recorded[k].iloc[0]) for k in latency_keys if k in recorded}
        source = f"recorded by the run (seed {seed}; {summary['profile']['repeats']} timed calls after "\
                 f"{summary['profile']['warmup']} warm-up calls)"
    else:  # a run made without onnxruntime: time the export now (the session above), with the run's settings
        latency = {k: float(recorded[k].iloc[0]) for k in latency_keys if k in recorded and len(recorded)}
        latency.update(time_deployed(deployed, rows, settings, seed))
        source = "kdx: recorded by the run; onnxruntime: measured at export (the run had no onnxruntime figures)"
    card = build_card(
        model_name=model, seed=seed, model=fitted, summary=summary, metrics=run.metrics, schema=schema,
        classes=run.class_names, parity={"max_abs_diff": gap, "rows": int(len(rows)), "tolerance": tolerance},
        onnx_info={"bytes": len(onnx_bytes), "sha256": hashlib.sha256(onnx_bytes).hexdigest(), "opset": OPSET,
                   "ml_opset": ML_OPSET},
        latency=latency, latency_source=source)
    folder = Path(out) if out is not None else run.path / "export" / f"seed_{seed}" / model
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_file(folder / "model.onnx") as tmp:
        Path(tmp).write_bytes(onnx_bytes)
    write_card(card, folder)
    # The scorer a deployment needs: onnxruntime and NumPy, nothing from kdx.
    write_text(folder / "score.py", (Path(__file__).parent / "score.py").read_text())
    return Exported(folder, folder / "model.onnx", card)
