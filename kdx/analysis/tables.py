"""The report's tables, each a DataFrame built from finished runs (also written as report_*.csv)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from kdx.analysis.claims import SUPPORTED, TABLE2, TABLE3, Verdict, seeds_to_decide, within_ci
from kdx.analysis.collect import RunRecord
from kdx.analysis.stats import gap_recovered, holm, paired_comparison
from kdx.analysis.summary import format_mean_sd, kd_text, mean_sd
from kdx.analysis.tradeoff import pareto_mask
from kdx.measure.metrics import headline, headline_name
from kdx.store.cache import content_key
from kdx.store.persist import MODELS, OBJECTIVE_FILE

log = logging.getLogger("kdx")


def md_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table (no extra dependency)."""
    if frame.empty:
        return "_(nothing to show)_\n"
    cells = frame.astype(object).where(frame.notna(), "—").astype(str)
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(v.replace("|", "\\|") for v in row) + " |" for row in cells.to_numpy()]
    return "\n".join([header, rule, *body]) + "\n"


def ms(run: RunRecord, model: str, metric: str, spec: str = ".4f", scale: float = 1.0) -> str:
    if run.metrics is None or metric not in run.metrics:
        return "—"
    stat = mean_sd(run.metrics.loc[run.metrics.model == model, metric] * scale)
    return format_mean_sd(stat, spec)


# A classification column's counterparts on a regression (nothing: the column does not apply).
ON_REGRESSION = {"accuracy": ("r2", "rmse"), "roc_auc": (), "ece": (), "teacher_agreement": ("teacher_rmse",),
                 "teacher_kl": ("teacher_r2",)}


def for_task(metrics: tuple[str, ...], regression: bool) -> tuple[str, ...]:
    """A table's metric columns for the runs' task: as they are for classes, their counterparts for a regression."""
    return metrics if not regression else tuple(m for c in metrics for m in ON_REGRESSION.get(c, (c,)))


def student_size(student: dict) -> str:
    keys = ("hidden", "max_depth", "max_leaf_nodes", "n_estimators")
    return ", ".join(f"{k}={student[k]}" for k in keys if k in student)


def tuned_on_validation(points: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and teacher→student family: the configuration whose KD student has the best mean
    validation accuracy (R² for a regression), with its test figures. The test split plays no part in the
    choice."""
    kd = points[points.model == "student_kd"] if not points.empty else points
    rows = []
    p = headline(points.columns)
    name = headline_name(p)
    for (dataset, pair), g in kd.groupby(["dataset", "pair"]) if not kd.empty else []:
        w = g.loc[g[f"val_{p}"].idxmax()]
        base = points[(points.run == w.run) & (points.model == "student_nokd")]
        teacher = points[(points.run == w.run) & (points.model == "teacher")]
        rows.append({"dataset": dataset, "pair": pair, "candidates": len(g), "chosen run": w.run,
                     "τ": float(f"{w.tau:.4g}"), "α": float(f"{w.alpha:.4g}"), "student": w.student_config,
                     f"val {name}": round(w[f"val_{p}"], 4),
                     f"test {name}": f"{w[p]:.4f} ± {w[f'{p}_sd']:.4f}" if not pd.isna(w[f"{p}_sd"])
                     else f"{w[p]:.4f}",
                     f"test {name}, no KD": round(float(base[p].iloc[0]), 4) if len(base) else None,
                     f"test {name}, teacher": round(float(teacher[p].iloc[0]), 4) if len(teacher) else None,
                     "test cosine": round(w.I, 4) if not pd.isna(w.I) else None})
    return pd.DataFrame(rows)


def identity(config: dict, model: str) -> str:
    """What determines a model of a run: a teacher is the same in every job of a τ/α sweep, a no-KD student
    the same for every KD setting. Rows with equal identity are one candidate, counted once."""
    keys = ["dataset", "split", "seeds", "limits", "teacher"]
    if model != "teacher":
        keys.append("student")
    if model == "student_kd":
        keys.append("kd")
        if labels_setting(config)[0] != "none":  # the rows it trained on (kept out for the study's runs)
            keys.append("augment")
    return content_key(model, {k: config.get(k) for k in keys})[:16]


def labels_setting(config: dict) -> tuple[str, float, str]:
    """Where a run's KD student got its rows and labels: (augmenter, size_factor, soft labels); the study's is
    ("none", 0, "insample"). A file of rows has no size factor (0)."""
    augment = config.get("augment") or {}
    name = str(augment.get("name", "none"))
    size = float(augment.get("size_factor", 0)) if name not in ("none", "rows") else 0.0
    return name, size, str((config.get("kd") or {}).get("soft_labels", "insample"))


def plain_labels(run: RunRecord) -> bool:
    return labels_setting(run.config) == ("none", 0.0, "insample")


def method(run: RunRecord) -> str:
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
                   "teacher_id": identity(c, "teacher"), "candidate": identity(c, model),
                   "pair": f"{c['teacher']['name']}→{c['student']['name']}", "tau": run.tau,
                   "alpha": run.alpha, "model": model, "seeds": len(g),
                   "kd_method": method(run) if model == "student_kd" else "none",
                   "student_config": student_size(c["student"])}
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
    p = headline(points.columns)
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
                         "test J": round(winner[f"J_{profile}"], 4), f"test {headline_name(p)}": round(winner[p], 4),
                         "C": round(winner["C"], 4), "test cosine (I)": round(winner["I"], 4),
                         "teacher val J (reference)": round(float(teacher[col].iloc[0]), 4) if len(teacher) else None})
    return points, pd.DataFrame(best)


def table2(runs: list[RunRecord]) -> pd.DataFrame:
    """The study's Table 2 beside each run's (R² and RMSE in place of accuracy for a regression; the study's own
    rows, all classification, only beside classification runs)."""
    rows = []
    regression = [run.metrics is not None and headline(run.metrics.columns) == "r2" for run in runs]
    for run, numbers in zip(runs, regression):
        for model in MODELS:
            first = {"R²": ms(run, model, "r2"), "RMSE": ms(run, model, "rmse", ".4g")} if numbers else {
                "accuracy": ms(run, model, "accuracy")}
            rows.append({"run": run.label, "model": model, **first,
                         "cosine": ms(run, model, "cosine"), "stability": ms(run, model, "stability")})
    if regression and all(regression):
        return pd.DataFrame(rows)
    study = [{"run": "study (published, over its datasets)", "model": m,
              "accuracy": f"{TABLE2['accuracy'][m][0]:.3f} ± {TABLE2['accuracy'][m][1]:.3f}",
              "cosine": (f"{TABLE2['cosine'][m][0]:.2f} ± {TABLE2['cosine'][m][1]:.2f}"
                         if m in TABLE2["cosine"] else "—"),
              "stability": f"{TABLE2['stability'][m][0]:.2f} ± {TABLE2['stability'][m][1]:.2f}"} for m in MODELS]
    return pd.DataFrame(study + rows)


def test_train_ratio(run: RunRecord) -> float:
    """n_test/n_train of a run (for corrected intervals); 0 (plain intervals) when not recorded."""
    stats = (run.summary or {}).get("stats", {})
    if stats.get("test", "paired") != "corrected":
        return 0.0
    return float(stats.get("test_train_ratio", 0.0))


def table3(runs: list[RunRecord], confidence: float) -> pd.DataFrame:
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
            row[f"{label} (ours)"] = ms(run, "student_kd", metric)
            if study is None or metric not in kd:
                row[f"{label}: study"] = "—" if study is None else f"{study[i]:.3f}"
                continue
            inside, _ = within_ci(kd[metric].to_numpy(float), study[i], confidence, test_train_ratio(run))
            mark = "" if inside is None else (" ✓ in our CI" if inside else " ✗ outside our CI")
            row[f"{label}: study"] = f"{study[i]:.3f}{mark}"
        row["MAD per feature (kdx 0.1, ≤ 2/d: not comparable)"] = ms(run, "student_kd", "mad")
        rows.append(row)
    return pd.DataFrame(rows)


def efficiency_table(runs: list[RunRecord]) -> pd.DataFrame:
    rows = []
    for run in runs:
        for model in MODELS:
            rows.append({"run": run.label, "model": model, "params": ms(run, model, "params", ".0f"),
                         "PRR": ms(run, model, "prr", ".3f"), "size kB": ms(run, model, "size_bytes", ".1f", 1e-3),
                         "latency ms (b=1)": ms(run, model, "latency_ms", ".4f"),
                         "latency ms (batch)": ms(run, model, "latency_batch_ms", ".3f"),
                         "latency −": ms(run, model, "latency_reduction", ".3f"),
                         "ONNX ms (b=1)": ms(run, model, "ort_latency_ms", ".4f"),
                         "ONNX ms (batch)": ms(run, model, "ort_latency_batch_ms", ".3f"),
                         "ONNX latency −": ms(run, model, "ort_latency_reduction", ".3f"),
                         "peak MB (batch)": ms(run, model, "peak_mb_batch", ".3f")})
    frame = pd.DataFrame(rows)
    # Runs without onnxruntime (kdx[deploy] missing or profile.onnx=false) have no ONNX figures at all.
    return frame.drop(columns=[c for c in frame.columns if c.startswith("ONNX") and (frame[c] == "—").all()])


def stats_table(runs: list[RunRecord]) -> pd.DataFrame:
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


def j_table(points: pd.DataFrame, profiles: list[str]) -> pd.DataFrame:
    if points.empty:
        return points
    cols = {"run": points.run, "dataset": points.dataset, "pair": points.pair, "τ": points.tau, "α": points.alpha,
            "model": points.model, "P": points.P.round(4), "C": points.C.round(4), "I": points.I.round(4)}
    for p in profiles:
        cols[f"J {p}"] = [f"{m:.4f} ± {s:.4f}" if not pd.isna(s) else f"{m:.4f}"
                          for m, s in zip(points[f"J_{p}"], points[f"J_{p}_sd"])]
    return pd.DataFrame(cols)


METHOD_METRICS = ("accuracy", "roc_auc", "ece", "cosine", "stability", "teacher_agreement", "teacher_kl")


def methods_tables(runs: list[RunRecord], alpha: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per dataset and teacher→student pair with two or more distillation objectives: each objective's KD
    student (mean ± sd over seeds) beside the no-KD student, with paired statistics (the runs' test,
    Holm over the table's tests) against the no-KD student and against `hinton` at the same τ/α.
    Returns the markdown-ready table and the long table of every comparison."""
    groups: dict[str, list[RunRecord]] = {}
    for run in runs:
        if run.metrics is None or not plain_labels(run):  # augmented / out-of-fold runs: augmentation table
            continue
        # Runs that share their no-KD student (same data, split, seeds, teacher, student) differ in the objective.
        groups.setdefault(identity(run.config, "student_nokd"), []).append(run)
    wide, long = [], []
    for members in groups.values():
        if len({method(r) for r in members}) < 2:
            continue
        first = members[0]
        test, ratio, label = _group_head(first)
        nokd = _seed_frame(first, "student_nokd")
        shown = for_task(METHOD_METRICS, headline(first.metrics.columns) == "r2")
        hinton = {_setting(r): r for r in members if method(r) == "hinton"}
        rows = [{"pair": label, "method": "no KD (hard labels)", "τ": "—", "α": "—",
                 **{m: ms(first, "student_nokd", m) for m in shown}}]
        tests = []
        for run in sorted(members, key=lambda r: (method(r) != "hinton", method(r), r.name)):
            kd = _seed_frame(run, "student_kd")
            tau, a = run.tau, run.alpha
            ref = hinton.get(_setting(run)) if method(run) != "hinton" else None
            refs = [("no KD", nokd)] + ([("hinton", _seed_frame(ref, "student_kd"))] if ref is not None else [])
            row = {"pair": label, "method": method(run), "τ": tau, "α": a,
                   **{metric: ms(run, "student_kd", metric) for metric in shown}}
            _compare(kd, refs, shown, (ratio, alpha, test), row, tests, long,
                     {"pair": label, "method": method(run), "τ": tau, "α": a})
            rows.append(row)
        _mark_holm(tests, long, alpha)  # Holm over each pair's table
        wide += rows
    return pd.DataFrame(wide), pd.DataFrame(long)


def _setting(run: RunRecord) -> tuple:
    """A run's (τ, α) as a key (a regression's τ, NaN, as None: NaN equals nothing, itself included)."""
    return (None if np.isnan(run.tau) else run.tau, run.alpha)


def _group_head(first: RunRecord) -> tuple[str, float, str]:
    """A table group's test, n_test/n_train ratio and label (dataset: teacher→student), from its first run."""
    test = (first.summary or {}).get("stats", {}).get("test", "paired")
    c = first.config
    return test, test_train_ratio(first), f"{c['dataset']['name']}: {c['teacher']['name']}→{c['student']['name']}"


def _seed_frame(run: RunRecord, model: str) -> pd.DataFrame:
    """One model's rows of a run's metrics, indexed by seed."""
    return run.metrics[run.metrics.model == model].set_index("seed")


def _compare(kd: pd.DataFrame, refs: list, metrics: tuple[str, ...], how: tuple, row: dict, tests: list,
             long: list, about: dict) -> None:
    """Paired comparisons of a KD student's per-seed `metrics` (`kd`) with each (name, per-seed frame) of
    `refs`, with `how` = (test_train_ratio, alpha, test): each one appended to `long` (with `about`), and to
    `tests` with the `row` and column its Δ goes to (filled in by _mark_holm)."""
    ratio, alpha, test = how
    for metric in metrics:
        for ref_name, ref in refs:
            if metric not in kd or metric not in ref:
                continue
            both = pd.concat([ref[metric], kd[metric]], axis=1, keys=["a", "b"]).dropna()
            r = paired_comparison(both.a.to_numpy(), both.b.to_numpy(), test_train_ratio=ratio, alpha=alpha,
                                  test=test)
            tests.append((len(long), row, f"{metric} Δ vs {ref_name}"))
            long.append({**about, "metric": metric, "versus": ref_name, **r})


def _mark_holm(tests: list, long: list, alpha: float) -> None:
    """Holm over `tests`: each comparison's adjusted p in `long`, and its Δ with the p in its row's column. An
    undecided comparison also gets the seeds that would detect its observed Δ with 80 % power at Holm's first
    step, α/m (`seeds_needed`; None where no number of re-split seeds would), in `long` and in its cell."""
    adjusted = holm([np.nan if long[i]["p"] is None else long[i]["p"] for i, *_ in tests])
    family = int(np.sum(~np.isnan(adjusted)))
    for (i, row, column), p_adj in zip(tests, adjusted):
        long[i]["p_adjusted"] = p_adj
        needs = None
        if not np.isnan(p_adj) and p_adj >= alpha and long[i].get("sd_diff"):
            needs, _ = seeds_to_decide(long[i], long[i]["diff"], alpha, True, family=family)
            long[i]["seeds_needed"] = needs
        seeds = "" if np.isnan(p_adj) or p_adj < alpha or not long[i].get("sd_diff") else (
            f"; ≈ {needs} seeds" if needs is not None else "; no number of seeds")
        mark = "" if np.isnan(p_adj) else (f" (p {p_adj:.2g}*)" if p_adj < alpha else f" (p {p_adj:.2g}{seeds})")
        row[column] = f"{long[i]['diff']:+.4f}{mark}"
    tests.clear()


def verdicts_table(verdicts: list[tuple[str, Verdict]]) -> pd.DataFrame:
    return pd.DataFrame([{"run": run, "claim": v.claim, "study": v.study, "ours": v.ours, "verdict": v.verdict,
                          "plain t-test verdict (kdx 0.1)": v.old_verdict, "effect of": v.effect_of,
                          "decided by": v.test, "seeds needed": "—" if v.seeds_needed is None else v.seeds_needed}
                         for run, v in verdicts])


def changed_verdicts(verdicts: list[tuple[str, Verdict]]) -> list[str]:
    """Claims whose verdict differs from the plain, uncorrected t-test's."""
    out = []
    for run, v in verdicts:
        old_yes = v.old_verdict.startswith("reproduced")
        if v.old_verdict != "—" and old_yes != (v.verdict == SUPPORTED):
            out.append(f"- {run}: {v.claim}: plain t-test {v.old_verdict.split(' (')[0]} → now {v.verdict}")
    return out


AUGMENT_METRICS = ("accuracy", "roc_auc", "ece", "cosine", "stability")


def augmentation_tables(runs: list[RunRecord], alpha: float, confidence: float = 0.95
                        ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per dataset, teacher→student pair and objective with two or more settings of the KD student's rows and
    labels (augment × size_factor × soft_labels): each setting's KD student (mean ± sd over seeds) with its
    difference from the no-KD student and from plain KD (the study's rows and in-sample labels, same objective),
    paired tests of the runs' kind with Holm over the whole table, and the share of the teacher–student accuracy
    gap it recovers, (acc_KD − acc_noKD)/(acc_T − acc_noKD), with its interval (R² for a regression). `chosen`:
    the setting with the best validation accuracy (R²) of its group (test figures reported as they are). Losses
    show as plainly as gains
    (negative differences, negative shares). Returns the markdown-ready table and the long table of tests."""
    groups: dict[str, list[RunRecord]] = {}
    for run in runs:
        if run.metrics is None:
            continue
        kd = {k: v for k, v in (run.config.get("kd") or {}).items() if k not in ("soft_labels", "oof_folds")}
        groups.setdefault(identity(run.config, "student_nokd") + content_key(kd), []).append(run)
    wide, long, tests = [], [], []
    for members in groups.values():
        settings = {labels_setting(r.config) for r in members}
        if len(settings) < 2 or settings == {("none", 0.0, "insample")}:
            continue
        first = members[0]
        test, ratio, label = _group_head(first)
        p = headline(first.metrics.columns)
        shown = for_task(AUGMENT_METRICS, p == "r2")
        label += f" ({method(first)} {kd_text(first.tau, first.alpha)})"
        nokd, teacher = _seed_frame(first, "student_nokd"), _seed_frame(first, "teacher")
        plain = next((r for r in members if plain_labels(r)), None)
        distinct: dict[tuple, RunRecord] = {}  # augment=none jobs of a sweep's size factors are one setting
        for r in members:
            distinct.setdefault(labels_setting(r.config), r)
        ordered = sorted(distinct.values(), key=lambda r: (not plain_labels(r), labels_setting(r.config)))
        val = {r.name: float(_seed_frame(r, "student_kd")[f"val_{p}"].mean()) if f"val_{p}" in r.metrics
               else float("nan") for r in ordered}
        best = max(val, key=lambda k: -np.inf if np.isnan(val[k]) else val[k])
        rows = [{"pair": label, "augment": "— (no KD)", "size": "—", "soft labels": "—",
                 **{m: ms(first, "student_nokd", m) for m in shown}}]
        for run in ordered:
            name, size, soft = labels_setting(run.config)
            kd = _seed_frame(run, "student_kd")
            row = {"pair": label, "augment": name, "size": f"{size:g}" if size else "—", "soft labels": soft,
                   **{m: ms(run, "student_kd", m) for m in shown},
                   f"val {headline_name(p)}": round(val[run.name], 4), "chosen": "✓" if run.name == best else ""}
            refs = [("no KD", nokd)] + ([("plain KD", _seed_frame(plain, "student_kd"))]
                                        if plain is not None and run is not plain else [])
            _compare(kd, refs, shown, (ratio, alpha, test), row, tests, long,
                     {"pair": label, "augment": name, "size": size, "soft_labels": soft})
            three = pd.concat([kd[p], nokd[p], teacher[p]], axis=1).dropna().to_numpy()
            gap = gap_recovered(three[:, 0], three[:, 1], three[:, 2], confidence, ratio if test == "corrected" else 0)
            row["gap recovered"] = ("—" if gap["recovered"] is None else f"{gap['recovered']:+.2f}" + (
                f" [{gap['low']:+.2f}, {gap['high']:+.2f}]" if gap["low"] is not None else ""))
            rows.append(row)
        wide += rows
    _mark_holm(tests, long, alpha)  # Holm over the whole table
    return pd.DataFrame(wide), pd.DataFrame(long)
