"""Report figures (matplotlib, headless): attribution distributions, the trade-off, τ curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from kdx.analysis.collect import RunRecord
from kdx.analysis.summary import kd_text
from kdx.measure.metrics import headline, headline_name

COLORS = {"teacher": "#4c72b0", "student_nokd": "#dd8452", "student_kd": "#55a868"}
LABELS = {"teacher": "teacher", "student_nokd": "student, no KD", "student_kd": "student, KD"}
MARKERS = {"teacher": "s", "student_nokd": "o", "student_kd": "^"}


def _pyplot():
    """matplotlib, headless, imported when a figure is drawn: every `kdx run` builds the report callback at
    start-up, and importing matplotlib there costs seconds (and logs its font cache before kdx's logging)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def attribution_distributions(run: RunRecord, file: Path, top: int = 10) -> bool:
    """The study's Figure 3: per-feature SHAP distributions, teacher vs students, pooled over seeds."""
    plt = _pyplot()
    files = sorted((run.path / "attributions").glob("seed_*.npz"))
    if not files:
        return False
    data = {m: [] for m in COLORS}
    for f in files:
        with np.load(f) as z:
            names = list(z["feature_names"])
            for m in data:
                data[m].append(z[m])
    values = {m: np.concatenate(v) for m, v in data.items()}
    order = np.argsort(-np.abs(values["teacher"]).mean(0))[:top][::-1]
    fig, ax = plt.subplots(figsize=(8, 0.55 * len(order) + 1.8))
    width = 0.26
    for k, model in enumerate(COLORS):
        positions = np.arange(len(order)) + (k - 1) * width
        box = ax.boxplot([values[model][:, j] for j in order], positions=positions, widths=width * 0.9,
                         orientation="horizontal", patch_artist=True, showfliers=False, manage_ticks=False)
        for patch in box["boxes"]:
            patch.set(facecolor=COLORS[model], alpha=0.75)
        for median in box["medians"]:
            median.set(color="black")
        ax.plot([], [], color=COLORS[model], lw=8, alpha=0.75, label=LABELS[model])
    ax.set_yticks(np.arange(len(order)), [names[j] for j in order])
    ax.axvline(0, color="grey", lw=0.8)
    output = (run.summary.get("explain") or {}).get("output_resolved", "logit") if run.summary else "logit"
    ax.set_xlabel(f"SHAP value per original feature (explained output: {output}, in logits)")
    ax.set_title(f"Attribution distributions, top {len(order)} features by teacher mean |φ|\n{run.label}, "
                 f"{len(files)} seed(s), whiskers 1.5 IQR")
    ax.legend(loc="lower right", frameon=False)
    fig.tight_layout()
    fig.savefig(file, dpi=120)
    plt.close(fig)
    return True


def tradeoff(points: pd.DataFrame, file: Path) -> bool:
    """The study's Figure 4, one panel per dataset: accuracy vs normalized cost, colour = alignment to the
    teacher, the Pareto set (chosen on validation) outlined."""
    plt = _pyplot()
    if points.empty or points.C.isna().all():
        return False
    datasets = sorted(points.dataset.unique())
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.2 * len(datasets) + 1.2, 4.8), squeeze=False,
                             layout="constrained")
    vmin = float(min(0.0, np.nanmin(points.I))) if points.I.notna().any() else 0.0
    scatter = None
    p = headline(points.columns)  # accuracy, or R² for a regression
    for ax, dataset in zip(axes[0], datasets):
        d = points[points.dataset == dataset]
        for model, g in d.groupby("model"):
            scatter = ax.scatter(g.C, g[p], c=g.I.fillna(1.0), cmap="viridis", vmin=vmin, vmax=1.0,
                                 marker=MARKERS.get(model, "o"), s=70, edgecolors="black", linewidths=0.3,
                                 label=LABELS.get(model, model))
        front = d[d.pareto]
        ax.scatter(front.C, front[p], s=190, facecolors="none", edgecolors="red", linewidths=1.5,
                   label="Pareto-efficient (validation)")
        if d.run.nunique() > 1 and len(d) <= 30:
            for _, r in d[d.model != "teacher"].iterrows():
                label = "no KD" if pd.isna(r.alpha) else kd_text(r.tau, r.alpha)
                ax.annotate(label, (r.C, r[p]), fontsize=6, xytext=(4, 3),
                            textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel("normalized cost C (vs teacher = 1, log scale)")
        ax.set_ylabel(f"test {headline_name(p)} (mean over seeds)")
        ax.set_title(f"{dataset}: {d.pair.iloc[0]}", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].legend(loc="lower right", fontsize=7, frameon=True)
    fig.suptitle("Accuracy–cost–alignment trade-off (C = mean of objective.cost relative to the teacher; "
                 "Pareto set among students)", fontsize=10)
    if scatter is not None:
        fig.colorbar(scatter, ax=axes[0].tolist(), label="I: SHAP cosine to the teacher", shrink=0.9)
    fig.savefig(file, dpi=120)
    plt.close(fig)
    return True


def tau_curves(runs: list[RunRecord], file: Path) -> bool:
    """Metric vs τ for the KD student, one line per α with a ±1 sd band over seeds; no-KD as reference."""
    plt = _pyplot()
    rows = []
    for run in runs:
        for _, r in run.metrics.iterrows():
            rows.append({"dataset": run.config["dataset"]["name"], "tau": run.tau,
                         "alpha": run.alpha, **r.to_dict()})
    frame = pd.DataFrame(rows)
    if frame.empty or frame.tau.nunique() < 2:
        return False
    metrics = [m for m in ("accuracy", "r2", "cosine", "stability") if m in frame]
    datasets = sorted(frame.dataset.unique())
    fig, axes = plt.subplots(len(datasets), len(metrics), figsize=(4.2 * len(metrics), 3.2 * len(datasets)),
                             squeeze=False)
    for i, dataset in enumerate(datasets):
        d = frame[frame.dataset == dataset]
        for j, metric in enumerate(metrics):
            ax = axes[i, j]
            kd = d[d.model == "student_kd"]
            for alpha, g in kd.groupby("alpha"):
                stats = g.groupby("tau")[metric].agg(["mean", "std"]).fillna(0.0)
                ax.plot(stats.index, stats["mean"], marker="o", label=f"KD, α={alpha:g}")
                ax.fill_between(stats.index, stats["mean"] - stats["std"], stats["mean"] + stats["std"], alpha=0.2)
            nokd = d[d.model == "student_nokd"][metric].mean()
            if not np.isnan(nokd):
                ax.axhline(nokd, color="grey", ls="--", lw=1, label="no KD (mean)")
            ax.axvspan(3, 5, color="gold", alpha=0.1, label="study's best τ range [3, 5]")
            ax.set_xlabel("temperature τ")
            ax.set_ylabel(f"test {metric}")
            ax.set_title(f"{dataset}: {metric} vs τ (band: ±1 sd over seeds)", fontsize=9)
            if i == 0 and j == 0:
                ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    fig.savefig(file, dpi=110)
    plt.close(fig)
    return True


def draw_all(runs: list[RunRecord], points: pd.DataFrame, out: Path) -> list[tuple[str, str]]:
    made = []
    shown = runs if len(runs) <= 6 else []
    for run in shown:
        name = f"fig3_attributions_{run.name}.png"
        if attribution_distributions(run, out / name):
            made.append((f"Per-feature attributions, teacher vs students — {run.label}", name))
    if tradeoff(points, out / "fig4_tradeoff.png"):
        made.append(("Accuracy–cost–alignment trade-off with the Pareto set", "fig4_tradeoff.png"))
    if tau_curves(runs, out / "fig_tau_curves.png"):
        made.append(("Metrics vs τ (KD student), seed bands", "fig_tau_curves.png"))
    return made
