"""`kdx report PATH`: tables, statistics, J, the Pareto set, the study's figures beside ours, and figures."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from kdx.cache import content_key
from kdx.claims import NOT_TESTED, SUPPORTED, TABLE2, TABLE3, Verdict, claims_for_run, tau_claim, within_ci
from kdx.collect import Collection, RunRecord, collect
from kdx.config import TIMED_COSTS
from kdx.objective import pareto_mask
from kdx.persist import OBJECTIVE_FILE, write_csv, write_text
from kdx.summary import format_mean_sd, mean_sd

log = logging.getLogger("kdx")
MODELS = ("teacher", "student_nokd", "student_kd")
REPORT_FILE = "report.md"
REPORT_STATS = ("accuracy", "ece", "nll", "cosine", "mad", "stability", "latency_ms", "latency_batch_ms")


def md_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table (no extra dependency)."""
    if frame.empty:
        return "_(nothing to show)_\n"
    cells = frame.astype(object).where(frame.notna(), "—").astype(str)
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(v.replace("|", "\\|") for v in row) + " |" for row in cells.to_numpy()]
    return "\n".join([header, rule, *body]) + "\n"


def _ms(run: RunRecord, model: str, metric: str, spec: str = ".4f", scale: float = 1.0) -> str:
    if run.metrics is None or metric not in run.metrics:
        return "—"
    stat = mean_sd(run.metrics.loc[run.metrics.model == model, metric] * scale)
    return format_mean_sd(stat, spec)


def _student_size(student: dict) -> str:
    keys = ("hidden", "max_depth", "max_leaf_nodes", "n_estimators")
    return ", ".join(f"{k}={student[k]}" for k in keys if k in student)


def tuned_on_validation(points: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and teacher→student family: the configuration whose KD student has the best mean
    validation accuracy, with its test figures. The test split plays no part in the choice."""
    kd = points[points.model == "student_kd"] if not points.empty else points
    rows = []
    for (dataset, pair), g in kd.groupby(["dataset", "pair"]) if not kd.empty else []:
        w = g.loc[g.val_accuracy.idxmax()]
        base = points[(points.run == w.run) & (points.model == "student_nokd")]
        teacher = points[(points.run == w.run) & (points.model == "teacher")]
        rows.append({"dataset": dataset, "pair": pair, "candidates": len(g), "chosen run": w.run,
                     "τ": float(f"{w.tau:.4g}"), "α": float(f"{w.alpha:.4g}"), "student": w.student_config,
                     "val accuracy": round(w.val_accuracy, 4),
                     "test accuracy": f"{w.accuracy:.4f} ± {w.accuracy_sd:.4f}" if not pd.isna(w.accuracy_sd)
                     else f"{w.accuracy:.4f}",
                     "test accuracy, no KD": round(float(base.accuracy.iloc[0]), 4) if len(base) else None,
                     "test accuracy, teacher": round(float(teacher.accuracy.iloc[0]), 4) if len(teacher) else None,
                     "test cosine": round(w.I, 4) if not pd.isna(w.I) else None})
    return pd.DataFrame(rows)


def _identity(config: dict, model: str) -> str:
    """What determines a model of a run: a teacher is the same in every job of a τ/α sweep, a no-KD student
    the same for every KD setting. Rows with equal identity are one candidate, counted once."""
    keys = ["dataset", "split", "seeds", "limits", "teacher"]
    if model != "teacher":
        keys.append("student")
    if model == "student_kd":
        keys.append("kd")
    return content_key(model, {k: config.get(k) for k in keys})[:16]


def _method(run: RunRecord) -> str:
    """The run's distillation objective (configs written by kdx 0.1 have no name: the study's Hinton loss)."""
    return str(run.config.get("kd", {}).get("name") or "hinton")


def points_table(runs: list[RunRecord]) -> pd.DataFrame:
    """One row per (run, model): means over seeds of the selection (validation) and test quantities."""
    rows = []
    for run in runs:
        file = run.path / OBJECTIVE_FILE
        if not run.complete or not file.is_file():
            continue
        scored = pd.read_csv(file).merge(run.metrics, on=["seed", "model"], how="left")
        c = run.config
        for model, g in scored.groupby("model", sort=False):
            row = {"run": run.name, "dataset": c["dataset"]["name"], "teacher": c["teacher"]["name"],
                   "teacher_id": _identity(c, "teacher"), "candidate": _identity(c, model),
                   "pair": f"{c['teacher']['name']}→{c['student']['name']}", "tau": float(c["kd"]["tau"]),
                   "alpha": float(c["kd"]["alpha"]), "model": model, "seeds": len(g),
                   "kd_method": _method(run) if model == "student_kd" else "none",
                   "student_config": _student_size(c["student"])}
            for col in g.columns:
                if col not in ("seed", "model") and pd.api.types.is_numeric_dtype(g[col]):
                    row[col] = float(g[col].mean())
                    row[f"{col}_sd"] = float(g[col].std(ddof=1)) if len(g) > 1 else np.nan
            rows.append(row)
    return pd.DataFrame(rows)


def pareto_and_best(points: pd.DataFrame, profiles: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pareto-efficient students over (val P, −C, val I) and the best student per dataset, teacher and weight
    profile by mean validation J — both chosen on validation metrics, reported with test metrics.

    - Per (dataset, teacher): C and I are normalised by the teacher, so fronts of different teachers (or
      datasets) do not compare.
    - The teacher is the reference, not a candidate: its C = 1 and I = 1 hold by definition, which would put
      it on every front.
    - A model repeated across a sweep's jobs (the shared teacher, the no-KD student) is one candidate.
    """
    if points.empty:
        return points, points
    points = points.drop_duplicates("candidate").copy() if "candidate" in points else points.copy()
    # τ and α belong to the KD student; a teacher or no-KD student shared by a sweep has none of its own.
    points.loc[points.model != "student_kd", ["tau", "alpha"]] = np.nan
    points["pareto"] = False
    students = points.model != "teacher"
    group_keys = ["dataset", "teacher_id"] if "teacher_id" in points else ["dataset"]
    for _, idx in points[students].groupby(group_keys).groups.items():
        objectives = points.loc[idx, ["val_P", "C", "val_I"]].to_numpy() * np.array([1, -1, 1])
        points.loc[idx, "pareto"] = pareto_mask(objectives)
    best = []
    for keys, candidates in points[students].groupby(group_keys, sort=True):
        teacher = points[(points.model == "teacher") & (points[group_keys] == pd.Series(
            keys if isinstance(keys, tuple) else (keys,), index=group_keys)).all(axis=1)]
        for profile in profiles:
            col = f"val_J_{profile}"
            if col not in candidates or not candidates[col].notna().any():
                continue
            winner = candidates.loc[candidates[col].idxmax()]
            best.append({"profile": profile, "run": winner["run"], "dataset": winner["dataset"],
                         "pair": winner["pair"], "τ": winner["tau"], "α": winner["alpha"], "model": winner["model"],
                         "objective": winner.get("kd_method", "—") if winner["model"] == "student_kd" else "—",
                         "candidates": len(candidates), "val J": round(winner[col], 4),
                         "test J": round(winner[f"J_{profile}"], 4), "test accuracy": round(winner["accuracy"], 4),
                         "C": round(winner["C"], 4), "test cosine (I)": round(winner["I"], 4),
                         "teacher val J (reference)": round(float(teacher[col].iloc[0]), 4) if len(teacher) else None})
    return points, pd.DataFrame(best)


def _table2(runs: list[RunRecord]) -> pd.DataFrame:
    rows = []
    for run in runs:
        for model in MODELS:
            rows.append({"run": run.label, "model": model, "accuracy": _ms(run, model, "accuracy"),
                         "cosine": _ms(run, model, "cosine"), "stability": _ms(run, model, "stability")})
    study = [{"run": "study (published, over its datasets)", "model": m,
              "accuracy": f"{TABLE2['accuracy'][m][0]:.3f} ± {TABLE2['accuracy'][m][1]:.3f}",
              "cosine": (f"{TABLE2['cosine'][m][0]:.2f} ± {TABLE2['cosine'][m][1]:.2f}"
                         if m in TABLE2["cosine"] else "—"),
              "stability": f"{TABLE2['stability'][m][0]:.2f} ± {TABLE2['stability'][m][1]:.2f}"} for m in MODELS]
    return pd.DataFrame(study + rows)


def _ratio(run: RunRecord) -> float:
    """n_test/n_train of a run (for corrected intervals); 0 (plain intervals) when not recorded."""
    stats = (run.summary or {}).get("stats", {})
    if stats.get("test", "paired") != "corrected":
        return 0.0
    return float(stats.get("test_train_ratio", 0.0))


def _table3(runs: list[RunRecord], confidence: float) -> pd.DataFrame:
    """The KD student's alignment beside the study's Table 3. Cosine per row (kdx's) and global (cosine of
    mean |φ|, possibly the study's); MAD scale-free (`mad_total`, the definition we infer for the study's
    figure: not like for like) and kdx's per-feature MAD (bounded by 2/d, not comparable)."""
    rows = []
    columns = (("cosine", "cosine per row", 0), ("cosine_global", "cosine global", 0),
               ("mad_total", "MAD ½Σ|Δφ̂| (inferred)", 1), ("stability", "stability", 2))
    for run in runs:
        name = run.config["dataset"]["name"]
        kd = run.metrics[run.metrics.model == "student_kd"] if run.metrics is not None else pd.DataFrame()
        study = TABLE3.get(name)
        row = {"run": run.label}
        for metric, label, i in columns:
            row[f"{label} (ours)"] = _ms(run, "student_kd", metric)
            if study is None or metric not in kd:
                row[f"{label}: study"] = "—" if study is None else f"{study[i]:.3f}"
                continue
            inside, _ = within_ci(kd[metric].to_numpy(float), study[i], confidence, _ratio(run))
            mark = "" if inside is None else (" ✓ in our CI" if inside else " ✗ outside our CI")
            row[f"{label}: study"] = f"{study[i]:.3f}{mark}"
        row["MAD per feature (kdx 0.1, ≤ 2/d: not comparable)"] = _ms(run, "student_kd", "mad")
        rows.append(row)
    return pd.DataFrame(rows)


def _efficiency(runs: list[RunRecord]) -> pd.DataFrame:
    rows = []
    for run in runs:
        for model in MODELS:
            rows.append({"run": run.label, "model": model, "params": _ms(run, model, "params", ".0f"),
                         "PRR": _ms(run, model, "prr", ".3f"), "size kB": _ms(run, model, "size_bytes", ".1f", 1e-3),
                         "latency ms (b=1)": _ms(run, model, "latency_ms", ".4f"),
                         "latency ms (batch)": _ms(run, model, "latency_batch_ms", ".3f"),
                         "latency −": _ms(run, model, "latency_reduction", ".3f"),
                         "ONNX ms (b=1)": _ms(run, model, "ort_latency_ms", ".4f"),
                         "ONNX ms (batch)": _ms(run, model, "ort_latency_batch_ms", ".3f"),
                         "ONNX latency −": _ms(run, model, "ort_latency_reduction", ".3f"),
                         "peak MB (batch)": _ms(run, model, "peak_mb_batch", ".3f")})
    frame = pd.DataFrame(rows)
    # Runs without onnxruntime (kdx[deploy] missing or profile.onnx=false) have no ONNX figures at all.
    return frame.drop(columns=[c for c in frame.columns if c.startswith("ONNX") and (frame[c] == "—").all()])


def _stats(runs: list[RunRecord]) -> pd.DataFrame:
    frames = []
    for run in runs:
        if run.stats is not None and len(run.stats):
            f = run.stats.copy()
            f.insert(0, "run", run.label)
            frames.append(f)
    if not frames:
        return pd.DataFrame()
    s = pd.concat(frames, ignore_index=True)
    for col in ("p_adjusted", "p_paired", "p_wilcoxon", "mde", "margin_verdict", "margin"):
        if col not in s:  # runs written before these columns existed
            s[col] = s["p"] if col == "p_adjusted" else np.nan
    fmt = lambda v, spec: "—" if pd.isna(v) else f"{v:{spec}}"  # noqa: E731
    return pd.DataFrame({
        "run": s.run, "metric": s.metric, "A → B": s.a + " → " + s.b, "Δ (B−A)": [fmt(v, ".4g") for v in s["diff"]],
        "95% CI": [("—" if pd.isna(lo) else f"[{lo:.4g}, {hi:.4g}]") for lo, hi in zip(s.ci_low, s.ci_high)],
        "p adj": [fmt(p, ".3g") + (" *" if sig else "") for p, sig in zip(s.p_adjusted, s.significant)],
        "p plain": [fmt(v, ".3g") for v in s.p_paired], "p Wilcoxon": [fmt(v, ".3g") for v in s.p_wilcoxon],
        "MDE": [fmt(v, ".4g") for v in s.mde],
        "vs margin": ["—" if pd.isna(v) else f"{v} (±{m:g})" for v, m in zip(s.margin_verdict, s.margin)],
        "Cohen's d": [fmt(v, ".2f") for v in s.cohens_d], "d_z": [fmt(v, ".2f") for v in s.d_z],
        "n": s.n, "note": s.note.fillna(""),
    })


def _j_table(points: pd.DataFrame, profiles: list[str]) -> pd.DataFrame:
    if points.empty:
        return points
    cols = {"run": points.run, "dataset": points.dataset, "pair": points.pair, "τ": points.tau, "α": points.alpha,
            "model": points.model, "P": points.P.round(4), "C": points.C.round(4), "I": points.I.round(4)}
    for p in profiles:
        cols[f"J {p}"] = [f"{m:.4f} ± {s:.4f}" if not pd.isna(s) else f"{m:.4f}"
                          for m, s in zip(points[f"J_{p}"], points[f"J_{p}_sd"])]
    return pd.DataFrame(cols)


METHOD_METRICS = ("accuracy", "ece", "cosine", "stability", "teacher_agreement")


def methods_tables(runs: list[RunRecord], alpha: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per dataset and teacher→student pair with two or more distillation objectives: each objective's KD
    student (mean ± sd over seeds) beside the no-KD student, with paired statistics (the runs' test,
    Holm over the table's tests) against the no-KD student and against `hinton` at the same τ/α.
    Returns the markdown-ready table and the long table of every comparison."""
    from kdx.stats import holm, paired_comparison

    groups: dict[str, list[RunRecord]] = {}
    for run in runs:
        if run.metrics is None:
            continue
        # Runs that share their no-KD student (same data, split, seeds, teacher, student) differ in the objective.
        groups.setdefault(_identity(run.config, "student_nokd"), []).append(run)
    wide, long = [], []
    for members in groups.values():
        if len({_method(r) for r in members}) < 2:
            continue
        first = members[0]
        stats = (first.summary or {}).get("stats", {})
        test, ratio = stats.get("test", "paired"), _ratio(first)
        c = first.config
        label = f"{c['dataset']['name']}: {c['teacher']['name']}→{c['student']['name']}"
        nokd = first.metrics[first.metrics.model == "student_nokd"].set_index("seed")
        hinton = {(float(r.config["kd"]["tau"]), float(r.config["kd"]["alpha"])): r for r in members
                  if _method(r) == "hinton"}
        rows = [{"pair": label, "method": "no KD (hard labels)", "τ": "—", "α": "—",
                 **{m: _ms(first, "student_nokd", m) for m in METHOD_METRICS}}]
        tests = []
        for run in sorted(members, key=lambda r: (_method(r) != "hinton", _method(r), r.name)):
            kd = run.metrics[run.metrics.model == "student_kd"].set_index("seed")
            tau, a = float(run.config["kd"]["tau"]), float(run.config["kd"]["alpha"])
            ref = hinton.get((tau, a)) if _method(run) != "hinton" else None
            refs = [("no KD", nokd)] + ([("hinton", ref.metrics[ref.metrics.model == "student_kd"].set_index("seed"))]
                                        if ref is not None else [])
            row = {"pair": label, "method": _method(run), "τ": tau, "α": a}
            for metric in METHOD_METRICS:
                row[metric] = _ms(run, "student_kd", metric)
                for ref_name, ref_frame in refs:
                    if metric not in kd or metric not in ref_frame:
                        continue
                    both = pd.concat([ref_frame[metric], kd[metric]], axis=1, keys=["a", "b"]).dropna()
                    r = paired_comparison(both.a.to_numpy(), both.b.to_numpy(), test_train_ratio=ratio, alpha=alpha,
                                          test=test)
                    tests.append((len(long), row, metric, ref_name))
                    long.append({"pair": label, "method": _method(run), "τ": tau, "α": a, "metric": metric,
                                 "versus": ref_name, **r})
            rows.append(row)
        adjusted = holm([np.nan if long[i]["p"] is None else long[i]["p"] for i, *_ in tests])
        for (i, row, metric, ref_name), p_adj in zip(tests, adjusted):
            long[i]["p_adjusted"] = p_adj
            mark = "" if np.isnan(p_adj) else (f" (p {p_adj:.2g}*)" if p_adj < alpha else f" (p {p_adj:.2g})")
            row[f"{metric} Δ vs {ref_name}"] = f"{long[i]['diff']:+.4f}{mark}"
        wide += rows
    return pd.DataFrame(wide), pd.DataFrame(long)


def _verdicts_table(verdicts: list[tuple[str, Verdict]]) -> pd.DataFrame:
    return pd.DataFrame([{"run": run, "claim": v.claim, "study": v.study, "ours": v.ours, "verdict": v.verdict,
                          "plain t-test verdict (kdx 0.1)": v.old_verdict, "effect of": v.effect_of,
                          "decided by": v.test} for run, v in verdicts])


def _changed(verdicts: list[tuple[str, Verdict]]) -> list[str]:
    """Claims whose verdict differs from the plain, uncorrected t-test's."""
    out = []
    for run, v in verdicts:
        old_yes = v.old_verdict.startswith("reproduced")
        if v.old_verdict != "—" and old_yes != (v.verdict == SUPPORTED):
            out.append(f"- {run}: {v.claim}: plain t-test {v.old_verdict.split(' (')[0]} → now {v.verdict}")
    return out


def _rules_section(runs: list[RunRecord], max_lines: int = 60) -> list[str]:
    """Readable students (trees): their rules beside their fidelity to the teacher."""
    out = []
    for run in runs:
        seeds = sorted(run.path.glob("checkpoints/seed_*/student_kd_rules.txt"))
        if not seeds:
            continue
        rules = seeds[0].read_text().splitlines()
        shown = rules[:max_lines] + ([f"... ({len(rules) - max_lines} more lines in {seeds[0].name})"]
                                     if len(rules) > max_lines else [])
        out += [f"### {run.label}: the distilled tree ({seeds[0].parent.name})", "",
                "Agreement with the teacher's predictions on the test split (mean ± sd over seeds): KD student "
                f"{_ms(run, 'student_kd', 'teacher_agreement')}, no-KD student "
                f"{_ms(run, 'student_nokd', 'teacher_agreement')}; test accuracy KD "
                f"{_ms(run, 'student_kd', 'accuracy')}.", "", "```", *shown, "```", ""]
    return (["## Readable students: rules and fidelity to the teacher", "", *out]) if out else []


def _warning_lines(runs) -> list[str]:
    """Flags a run raised about its own results (kdx.summary.sanity_warnings), first, where nobody misses them."""
    flagged = [(r.label, w) for r in runs for w in (r.summary or {}).get("warnings", [])]
    if not flagged:
        return []
    return ["", "**Warnings** (read these before any figure below):", "",
            *[f"- {label}: {line}" for label, line in flagged]]


def _data_lines(runs) -> list[str]:
    """The data section: what each dataset's columns became (identifiers, free text, dates, constant columns
    dropped), as the run said before training."""
    seen, out = set(), []
    for r in runs:
        data = (r.summary or {}).get("dataset", {})
        notes = data.get("column_notes", [])
        if not notes or data.get("name") in seen:
            continue
        seen.add(data.get("name"))
        out += ["", f"**Data: {data.get('name')}** ({data.get('rows')} rows, {len(data.get('features', []))} "
                "feature columns used). Notes on its columns, made before training:", "",
                *[f"- {n}" for n in notes]]
    return out


def _teacher_and_game_lines(runs) -> list[str]:
    """Where a run's teacher came from (a pretrained file) and which game its attributions are from."""
    lines = []
    files = [(r.label, r.summary["teacher"]) for r in runs if (r.summary or {}).get("teacher")]
    if files:
        lines += ["", "**Pretrained teacher** (used as it is, not trained by kdx): " + "; ".join(
            f"{label}: `{t['path']}` ({t['format']}, SHA-256 {t['sha256'][:12]}…)" for label, t in files)
            + ". It was trained outside kdx's splits: kdx cannot know whether its training rows include these "
              "seeds' test rows; if they do, its test metrics and the KD student's are optimistic."]
    games = {((r.summary or {}).get("explain") or {}).get("players_resolved", "columns") for r in runs}
    if "features" in games:
        lines += ["", "Alignment game: the players are the **original features** (explain.players=features): "
                  "every model is explained by kdx's model-agnostic Shapley estimator, a raw-column teacher on raw "
                  "rows and the students on encoded rows, one-hot blocks moving as one"
                  + (". Other runs here use the encoded columns as players: compare alignment only within one "
                     "game." if len(games) > 1 else ".")]
    return lines


def _together_lines(runs, root: Path) -> list[str]:
    """How many students were trained per stacked pass (kdx.models.stacked): the sweep's grouped passes
    (trained_together.json, written by the launcher) and the runs' own (column trained_together)."""
    lines = []
    file = root / "trained_together.json"
    groups = json.loads(file.read_text()) if file.is_file() else []
    for g in groups:
        if "skipped" in g:
            lines.append(f"{g['jobs']} jobs differing only in kd.*: each trained its own students ({g['skipped']}).")
        elif any(g["students_per_pass"]):
            sizes = sorted({n for n in g["students_per_pass"] if n})
            who = ("their students" if g.get("jobs_stacked", g["jobs"]) == g["jobs"] else
                   f"the no-KD student and the KD students of the {g['jobs_stacked']} jobs whose objective has a "
                   "stacked form")
            lines.append(f"{g['jobs']} jobs differing only in kd.*: {who} were trained together before the "
                         f"jobs ran, {'/'.join(map(str, sizes))} students per stacked pass, one pass per seed "
                         f"({g['seconds']:.1f} s in all).")
    sizes = [r.metrics.loc[r.metrics.model != "teacher", "trained_together"] for r in runs
             if r.metrics is not None and "trained_together" in r.metrics]
    if sizes:
        together = pd.concat(sizes)
        if (together > 1).any():
            lines.append(f"Students trained in a stacked pass: {int((together > 1).sum())} of {len(together)} "
                         f"student rows, up to {int(together.max())} per pass (column `trained_together`; "
                         "`train_seconds` is then the student's share of the pass).")
    if not lines:
        return []
    return ["", " ".join(lines) + " Stacked training gives one-by-one results up to float rounding (README, "
            "\"Speed\")."]


def _optuna_lines(root: Path) -> list[str]:
    """What an Optuna search (+sweep=optuna, optuna.json in the sweep folder) tried and chose."""
    file = root / "optuna.json"
    if not file.is_file():
        return []
    study = json.loads(file.read_text())
    done = [t for t in study["trials"] if t["value"] is not None]
    best = study.get("best") or {}
    params = ", ".join(f"{k} = {float(v):.4g}" if isinstance(v, (int, float)) else f"{k} = {v}"
                       for k, v in best.get("params", {}).items())
    return [f"This sweep is an Optuna search ({study['sampler']}, seed {study['seed']}): {len(done)} of "
            f"{len(study['trials'])} trials finished, each ranked by {study['objective']}; the test split took no "
            f"part. Best trial: job {best.get('job')} ({params}), validation accuracy "
            f"{best.get('value', float('nan')):.4f}. Every trial is in `optuna.json`.", ""]


def build_report(collection: Collection, figures: bool = True) -> str:
    runs = [r for r in collection.runs if r.complete]
    first = runs[0].summary if runs else {}
    alpha = first.get("stats", {}).get("alpha", 0.05)
    confidence = first.get("stats", {}).get("confidence", 0.95)
    profiles = list(first.get("objective", {}).get("profiles", {}))
    every_run = points_table(runs)  # one row per (run, model): each run's own teacher and baseline
    points, best = pareto_and_best(every_run, profiles)
    out = collection.root
    tables = {"table2": _table2(runs), "table3": _table3(runs, confidence), "efficiency": _efficiency(runs),
              "stats": _stats(runs), "objective": _j_table(points, profiles), "best_per_profile": best,
              "pareto": points[points.pareto] if "pareto" in points else points,
              "tuned": tuned_on_validation(every_run)}
    verdicts = [(r.label, v) for r in runs for v in claims_for_run(r.metrics, r.stats, alpha, _ratio(r))]
    verdicts.append(("all runs", tau_claim(points) if not points.empty else Verdict(
        "τ between 3 and 5 gives the best KD student", "τ ∈ [3, 5]", "no complete run", "", NOT_TESTED)))
    tables["claims"] = _verdicts_table(verdicts)
    tables["methods"], tables["methods_stats"] = methods_tables(runs, alpha)
    for name, table in tables.items():
        write_csv(out / f"report_{name}.csv", table)
    write_csv(out / "report_points.csv", points)

    lines = [f"# kdx report: {out}", ""]
    lines += [f"{len(runs)} complete run(s) of {len(collection.runs)} found."]
    reuse = [r.metrics.reused for r in runs if r.metrics is not None and "reused" in r.metrics]
    if reuse:
        flags = pd.concat(reuse)
        lines += ["", f"Models trained and measured: {int((~flags).sum())}; reused from the cache: "
                  f"{int(flags.sum())} (per run: column `reused` of metrics.csv)."]
    lines += _together_lines(runs, out)
    if collection.missing:
        lines += ["", "**Missing or incomplete** (the tables below use the complete runs only):", ""]
        lines += [f"- {m}" for m in collection.missing]
    if collection.not_applicable:
        lines += ["", "**Not applicable** (skipped by design):", ""]
        lines += [f"- {m}" for m in collection.not_applicable]
    if first:
        m = first.get("machine", {})
        lines += ["", f"Seeds {first.get('seeds')}; machine: {m.get('cpu')}, {m.get('logical_cpus')} logical CPUs; "
                  f"latency with {first.get('profile', {}) and first['profile'].get('threads')} thread(s); "
                  f"torch {first.get('versions', {}).get('torch')}, shap {first.get('versions', {}).get('shap')}."]
    lines += _warning_lines(runs)
    lines += _data_lines(runs)
    lines += _teacher_and_game_lines(runs)
    stats_first = first.get("stats", {})
    test_line = ("the corrected resampled t-test (Nadeau & Bengio 2003: the variance of the mean difference is "
                 "s²·(1/n + n_test/n_train), because re-split seeds share most of their training rows; "
                 "Bouckaert & Frank 2004 for repeated CV)" if stats_first.get("test", "paired") == "corrected"
                 else "the plain paired t-test (stats.test=paired: seeds treated as independent)")
    adjust_line = ("Holm–Bonferroni over all tests of a run (difference tests; non-inferiority tests; inferiority "
                   "tests: three families)" if stats_first.get("correction", "none") == "holm"
                   else "no multiple-comparison adjustment (stats.correction=none)")
    changed = _changed(verdicts)
    cost = first.get("objective", {}).get("cost_used", first.get("objective", {}).get("cost", []))
    i_used = first.get("objective", {}).get("I_used", True)
    timed = [c for c in cost if c in TIMED_COSTS]
    lines += ["", "## The study's claims beside ours", "",
              f"Each verdict comes from the test named in its row, on the seeds of that run: {test_line}, "
              f"{adjust_line}, α = {alpha:g}. *supported* / *contradicted*: significant in / against the claimed "
              "direction; *inconclusive*: not significant — with the seeds that would detect the observed "
              "difference at 80 % power at Holm's strictest level α/m, or why no number of re-split seeds would. "
              "“Keeps the teacher's accuracy” is a non-inferiority claim: a non-significant difference does not "
              f"show it, a one-sided test against the margin (stats.margins.accuracy = "
              f"{stats_first.get('margins', {}).get('accuracy', '—')}) does. The plain t-test's verdict, "
              "uncorrected and unadjusted as kdx 0.1 gave it, stands beside each; *effect of* says whether the "
              "no-KD student shows the same effect (then it belongs to the student architecture, not to KD).", "",
              md_table(tables["claims"]),
              *(["What the corrections changed (plain t-test → now):", "", *changed, ""] if changed else
                ["The corrections changed no verdict.", ""]),
              "## Table 2 — teacher, student without KD, student with KD (test split, mean ± sd over seeds)", "",
              md_table(tables["table2"]),
              "## Table 3 — alignment of the KD student per dataset", "",
              f"✓/✗: whether the study's value lies inside our {confidence:.0%} confidence interval of the mean "
              "(corrected variance). Not like for like: the study does not define its cosine (per row, or of the "
              "global importances mean |φ|: both shown) nor its MAD. kdx 0.1's MAD, the mean over d features of "
              "|φ̂_T − φ̂_S| with φ̂ = φ/Σ|φ|, is bounded by 2/d (0.067 for Breast Cancer's 30 features), so the "
              "study's 0.065 at cosine 0.91 cannot be that; we hold the study's figure against ½Σ_j|φ̂_T,j − φ̂_S,j| "
              "∈ [0, 1] (= d/2 · kdx 0.1's MAD), the scale-free reading we infer. Stability: our perturbation "
              "(Gaussian noise on numeric features, categorical features resampled with probability "
              f"{first.get('explain', {}) and first['explain'].get('categorical_resample', 0)}) need not be the "
              "study's.", "",
              md_table(tables["table3"]),
              "## Efficiency (CPU)", "",
              "`latency`: kdx's `predict_proba` in torch eager / scikit-learn on already-encoded rows. `ONNX`: the "
              "model exported by `kdx export` in onnxruntime (one thread, sequential), fed raw rows, so its time "
              "includes imputation, scaling and one-hot encoding; `—` where onnxruntime was not used.", "",
              md_table(tables["efficiency"]),
              f"## Statistics (paired over seeds; * adjusted p < {alpha:g})", "",
              f"Test: {test_line}; {adjust_line}. `p plain`: the uncorrected paired t-test; `p Wilcoxon`: the "
              "signed-rank test (with 5 seeds its smallest two-sided p is 0.0625). MDE: the smallest difference "
              "these seeds detect at 80 % power. `vs margin`: non-inferiority of B against A within the margin. "
              "Key metrics; every metric is in `report_stats.csv` (and each run's `stats.csv`).", "",
              md_table(tables["stats"][tables["stats"].metric.isin(REPORT_STATS)] if len(tables["stats"])
                       else tables["stats"]),
              "## Composite objective J = a_P·P − b_C·C + g_I·I (test, mean ± sd over seeds)", "",
              "P = accuracy, C = mean of model/teacher over " + (", ".join(cost) or "nothing measured (C left out "
                                                                 "of J)")
              + " (teacher = 1), I = SHAP cosine to the teacher (the teacher's I = 1 by definition: it is the "
              "reference, not a candidate, in the selections below)"
              + ("" if i_used else "; **explanations were off, so I is undefined and left out of J**")
              + ". Profiles: "
              + "; ".join(f"{k}: a_P={v['a_P']}, b_C={v['b_C']}, g_I={v['g_I']}"
                          for k, v in first.get("objective", {}).get("profiles", {}).items()) + ".", "",
              md_table(tables["objective"]),
              *(["## Distillation objectives (KD student per objective, test split, mean ± sd over seeds)", "",
                 "Each Δ is the objective's KD student minus the no-KD student, or minus `hinton` at the same τ "
                 f"and α, paired over seeds ({test_line}; Holm over the table's tests; * adjusted p < "
                 f"{alpha:g}). `label_smoothing` is the no-teacher control: an effect it shares is not "
                 "distillation. Every comparison is in `report_methods_stats.csv`.", "",
                 md_table(tables["methods"])] if len(tables["methods"]) else []),
              "## Tuned on validation", "",
              "Per dataset and pair, the configuration (τ, α, student size) whose KD student has the best mean "
              "validation accuracy; its test figures are reported as they are. The test split takes no part in "
              "the choice. Sweep with `kdx run +sweep=tune` or `+sweep=tau_alpha`, or search with "
              "`+sweep=optuna`.", "", *_optuna_lines(out),
              md_table(tables["tuned"]),
              "## Best student per dataset, teacher and profile (chosen on validation, reported on test)", "",
              "Candidates: every distinct student (a no-KD student shared by a sweep's jobs counts once); the "
              "teacher's validation J is shown for reference. "
              + (f"**C includes timed costs ({', '.join(timed)})**: measured latency varies between runs, so "
                 "these picks can change when the sweep is rerun; the default cost (params, flops) is computed."
                 if timed else "C is computed (" + ", ".join(cost) + "), not timed: rerunning the same sweep "
                 "gives the same picks."), "",
              md_table(tables["best_per_profile"]),
              "## Pareto-efficient students over (P, −C, I), per dataset and teacher, on validation metrics", "",
              md_table(tables["pareto"][["run", "dataset", "pair", "tau", "alpha", "model", "val_P", "C", "val_I",
                                         "accuracy", "I"]].round(4) if not points.empty else points)]
    lines += _rules_section(runs)
    if figures and runs:
        from kdx.figures import draw_all

        lines += ["## Figures", ""]
        for title, file in draw_all(runs, points, out):
            lines += [f"### {title}", "", f"![{title}]({file})", ""]
    lines += ["", "Tables as CSV: `report_*.csv` beside this file."]
    return "\n".join(lines) + "\n"


def write_report(path: str | Path, figures: bool = True) -> tuple[Path, Collection]:
    collection = collect(path)
    text = build_report(collection, figures)
    target = collection.root / REPORT_FILE
    write_text(target, text)
    return target, collection


try:
    from hydra.experimental.callback import Callback
except ImportError:  # pragma: no cover
    Callback = object


class ReportCallback(Callback):
    """Writes the report at the end of `kdx run` (run directory) and of a multirun (sweep directory).
    When a job fails Hydra stops before this fires: run `kdx report SWEEP_DIR` on what completed."""

    def __init__(self, figures: bool = True):
        self.figures = figures

    def on_run_end(self, config, **kwargs) -> None:
        self._write(config.hydra.runtime.output_dir)

    def on_multirun_end(self, config, **kwargs) -> None:
        self._write(config.hydra.sweep.dir)

    def _write(self, path) -> None:
        try:
            target, _ = write_report(path, self.figures)
            log.info("report: %s", target)
        except Exception as exc:  # the results are already safe on disk; a report failure must not hide them
            log.warning("report not written (%s); run kdx report %s", exc, path)
