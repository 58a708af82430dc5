"""The model card shipped beside an exported model: what it is, what it was trained on, how well it does
(over seeds, with confidence intervals), how it explains, how fast it runs, and how to feed it."""

from __future__ import annotations

import datetime as dt

import numpy as np

from kdx.measure.intervals import mean_interval
from kdx.store.persist import write_json, write_text

CARD_METRICS = ("r2", "rmse", "mae", "teacher_rmse", "teacher_r2", "accuracy", "macro_f1", "roc_auc", "brier",
                "ece", "nll", "teacher_agreement", "teacher_kl", "cosine",
                "cosine_global", "mad_total", "stability", "stability_worst")
LATENCY = ("latency_ms", "latency_median_ms", "latency_p95_ms", "latency_batch_ms", "latency_per_row_ms")


def _number(value):
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else value


def build_card(*, model_name: str, seed: int, model, summary: dict, metrics, schema, classes, parity: dict,
               onnx_info: dict, latency: dict, latency_source: str) -> dict:
    """The card as a dict (model_card.json); `render` writes it as Markdown."""
    config = summary["config"]
    confidence = float(config["stats"]["confidence"])
    ratio = float(summary.get("split", {}).get("test_train_ratio") or 0.0)
    recorded = summary["metrics"].get(model_name, {})
    rows = metrics[metrics.model == model_name]
    this_seed = rows[rows.seed == seed]
    table = {}
    for name in CARD_METRICS:
        if name not in recorded or recorded[name].get("mean") is None:
            continue
        interval = mean_interval(rows[name].to_numpy(float), confidence, ratio)
        table[name] = {**recorded[name], "ci_low": None if interval is None else interval[0],
                       "ci_high": None if interval is None else interval[1],
                       "this_seed": _number(float(this_seed[name].iloc[0])) if len(this_seed) else None}
    distilled = model_name == "student_kd"
    regression = summary["dataset"].get("task") == "regression"
    outputs = ({"prediction": f"double [rows], the predicted {classes[0]} in its own units"} if regression else
               {"probabilities": "float [rows, classes], in the order of `classes`",
                "label": "string [rows], the class with the highest probability"})
    return {
        "kdx_version": summary.get("versions", {}).get("kdx"),
        "exported": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "model": {"name": model_name, "seed": seed, "class": type(model).__name__, "family": model.family,
                  "config": config["teacher" if model_name == "teacher" else "student"],
                  "params": int(model.n_params()), "flops_per_row": float(model.flops())},
        "distilled_from": {"teacher": config["teacher"], "kd": summary["kd"], "augment": summary.get("augment")}
        if distilled else None,
        "training": "the teacher" if model_name == "teacher" else (
            f"distilled with {summary['kd']['method']}" if distilled
            else "the same student trained on the labels only"),
        "dataset": {**summary["dataset"], "data_fingerprint": summary.get("data_fingerprint"),
                    "split": summary.get("split"), "split_sizes": summary.get("split_sizes", {}).get(str(seed))
                    or summary.get("split_sizes", {}).get(seed)},
        "classes": list(classes),
        "inputs": {"contract": "one input per feature, shape [rows, 1]: numeric as double (NaN = missing), "
                               "categorical as string (\"\" = missing; str(value) of anything else; unseen "
                               "values encode as all zeros)", **schema.to_dict()},
        "outputs": outputs,
        "metrics": {"confidence": confidence, "interval": "t interval over seeds with the corrected variance "
                    "(1/n + n_test/n_train)" if ratio else "t interval over seeds", "seeds": summary.get("seeds"),
                    "test": table},
        "latency_ms": {"source": latency_source, **latency},
        "parity": parity,
        "onnx": onnx_info,
        "config": config,
        "code": summary.get("code"),
        "versions": summary.get("versions"),
    }


def _fmt(value, spec: str = ".4f") -> str:
    return "—" if value is None else f"{value:{spec}}"


def _example(inputs: dict) -> list[str]:
    """Python lines building a one-row feed (numeric at its training median, categories at their first level)."""
    numeric = {f["name"]: f["median"] for f in inputs["numeric"]}
    categorical = {f["name"]: f["categories"][0] for f in inputs["categorical"]}
    return [f"numeric = {numeric!r}", f"categorical = {categorical!r}",
            "feed = {**{k: np.array([[v]], dtype=np.float64) for k, v in numeric.items()},",
            "        **{k: np.array([[v]], dtype=object) for k, v in categorical.items()}}"]


def render(card: dict) -> str:
    m = card["model"]
    lines = [f"# Model card: {card['dataset']['name']} {m['name']} (seed {m['seed']})", "",
             f"{m['class']} ({m['family']}), {m['params']} parameters, {m['flops_per_row']:.0f} operations per row; "
             f"{card['training']}. Exported by kdx {card['kdx_version']} on {card['exported']}.", ""]
    if card["distilled_from"]:
        kd = card["distilled_from"]["kd"]
        augment = card["distilled_from"].get("augment")
        rows = "" if not augment else (
            f" Besides its training rows it learned from rows generated by `{augment['name']}` (size factor "
            f"{augment.get('size_factor', '—')}) that the teacher labelled.")
        oof = kd.get("soft_labels") == "oof"
        labels = " The teacher's labels on the training rows were out of fold." if oof else ""
        tau = "" if kd.get("tau") is None else f"τ = {kd['tau']:g}, "
        lines += [f"Teacher: `{card['distilled_from']['teacher']['name']}`; objective `{kd['method']}`, "
                  f"{tau}α = {kd['alpha']:g}.{rows}{labels}", ""]
    data = card["dataset"]
    regression = "prediction" in card["outputs"]
    target = (f"target {card['classes'][0]} (a regression: mean {data.get('target_mean', float('nan')):.4g}, sd "
              f"{data.get('target_sd') or float('nan'):.4g})" if regression else f"classes {card['classes']}")
    lines += ["## Data", "",
              f"{data['name']}: {data['rows']} rows, {target}; source: {data['source']}.",
              f"Data fingerprint (SHA-256): `{data['data_fingerprint']}`; split of this seed: "
              f"{data['split_sizes']}.", "",
              "## Test metrics", "",
              f"Mean ± sd over seeds {card['metrics']['seeds']}, {card['metrics']['confidence']:.0%} "
              f"{card['metrics']['interval']}; and this seed's value.", "",
              "| metric | mean ± sd | CI | this seed |", "|---|---|---|---|"]
    for name, s in card["metrics"]["test"].items():
        sd = f" ± {s['sd']:.4f}" if s.get("sd") is not None else ""
        ci = "—" if s["ci_low"] is None else f"[{s['ci_low']:.4f}, {s['ci_high']:.4f}]"
        lines.append(f"| {name} | {s['mean']:.4f}{sd} | {ci} | {_fmt(s['this_seed'])} |")
    lat = card["latency_ms"]
    lines += ["", "`cosine`, `mad_total`, `stability`: SHAP alignment with the teacher and stability under "
              "perturbation (see kdx's README).", "", "## Latency (ms, one CPU thread)", "",
              f"Source: {lat['source']}.", "", "| runtime | batch 1 mean | median | p95 | batch | per row |",
              "|---|---|---|---|---|---|"]
    for label, prefix in (("kdx (torch / scikit-learn, encoded rows)", ""), ("onnxruntime (raw rows)", "ort_")):
        cells = [_fmt(lat.get(f"{prefix}latency_{k}")) for k in ("ms", "median_ms", "p95_ms")]
        cells += [_fmt(lat.get(f"{prefix}latency_batch_ms"), ".3f"),
                  _fmt(lat.get(f"{prefix}latency_per_row_ms"), ".5f")]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    p, o = card["parity"], card["onnx"]
    lines += ["", "## The ONNX file", "",
              f"`model.onnx`, {o['bytes']} bytes, SHA-256 `{o['sha256']}`, opset {o['opset']} (+ ai.onnx.ml "
              f"{o['ml_opset']}). Parity with kdx on {p['rows']} test rows: largest "
              f"{'|Δ prediction| / sd' if regression else '|Δp|'} = {p['max_abs_diff']:.2e} "
              f"(tolerance {p['tolerance']:g}).", "", "Inputs (one per feature, shape [rows, 1]):", ""]
    for f in card["inputs"]["numeric"]:
        lines.append(f"- `{f['name']}`: double; missing → median {f['median']:.6g}"
                     + (" (empty in training: ignored)" if f["empty"] else ""))
    for f in card["inputs"]["categorical"]:
        shown = ", ".join(f["categories"][:12]) + (", …" if len(f["categories"]) > 12 else "")
        lines.append(f"- `{f['name']}`: string, one of {len(f['categories'])}: {shown}")
    lines += ["", "Missing categorical values are \"\"; other values are passed as str(value). Outputs: "
              + ("`prediction` (double [rows], in the target's units)." if regression else
                 "`probabilities` (float [rows, classes]) and `label` (string [rows])."), "",
              "Score a CSV file with nothing but onnxruntime and NumPy: `python score.py rows.csv predictions.csv` "
              "(score.py is beside this card). One row from Python:", "",
              "```python", "import numpy as np, onnxruntime as ort", "",
              "session = ort.InferenceSession(\"model.onnx\")", *_example(card["inputs"]),
              "(prediction,) = session.run(None, feed)" if regression else
              "probabilities, label = session.run(None, feed)", "```", "",
              "The exact configuration, library versions and code fingerprint are in model_card.json."]
    return "\n".join(lines) + "\n"


def write_card(card: dict, folder) -> None:
    write_json(folder / "model_card.json", card)
    write_text(folder / "model_card.md", render(card))
