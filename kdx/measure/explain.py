"""SHAP attributions of teachers and students in one game: interventional SHAP on the same background
rows, for the same output scalar, grouped back to the original features.

Output scalar (`output`):
- `auto`: `margin` for binary tasks, `centred` for multiclass;
- `margin`: z₁ − z₀ (binary only), the log-odds;
- `centred`: z_c − mean_k z_k for c = the teacher's predicted class on the clean row. A per-row shift
  of all logits leaves probabilities and these attributions unchanged;
- `raw`: z_c for the teacher's predicted class (not shift-invariant; for comparison only).
Because every explainer used here is linear in the explained output, attributions are computed for each
raw logit and then combined.

Explainers, chosen per model family (each deterministic for the same input):
- torch MLPs: DeepLIFT with the rescale rule averaged over the background — what `shap.DeepExplainer`
  computes (checked against it in the tests), batched over rows × background (kdx.measure.deeplift); exact for
  linear models, additive by construction;
- boosted trees (scikit-learn's histogram GBT, XGBoost, LightGBM, CatBoost), read into one representation
  (kdx.models.ensemble): `shap.TreeExplainer`, interventional, one explanation per class built from that
  class's trees (exact; much faster than explaining the stacked multiclass model);
- decision-tree students: `shap.TreeExplainer`, interventional, on the tree with its leaf logits as
  outputs (exact);
- anything else: permutation sampling (kdx.measure.shapley, the estimator of `shap.PermutationExplainer`,
  batched, seeded).
`explain.method=permutation` or `exact` (kdx.measure.shapley: all coalitions, up to 16 encoded columns) replaces
the per-family choice for every model, e.g. to check how far DeepLIFT is from the Shapley values.

Players (`explain.players`): the encoded columns (one-hot levels separately, then summed per original
feature), or the original features themselves (`features`: a one-hot block enters or leaves a coalition
as one). The feature game is the only like-for-like game when the teacher reads raw columns (a pretrained
teacher, `auto` picks it then): the teacher is evaluated on raw rows mixed feature by feature, the students
on encoded rows mixed block by block, from the same explained and background rows. In it every model is
explained by the model-agnostic estimators of kdx.measure.shapley (permutation, or exact), never per family.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np

from kdx.config.schema import ExplainSettings  # noqa: F401 — the settings, as the config's schema
from kdx.errors import ConfigError, KdxError
from kdx.measure.alignment import cosine, cosine_global, mad, mad_total, spearman, stability, topk_agreement
from kdx.measure.deeplift import deeplift
from kdx.measure.shapley import evaluations_per_row, exact_shapley, permutation_shapley
from kdx.models import Classifier, MLPClassifier, TreeClassifier
from kdx.models.base import reads_raw
from kdx.models.ensemble import TreeEnsemble
from kdx.models.outputs import explained_output, output_matrix


def resolve_players(players: str, raw_teacher: bool) -> str:
    """'auto' → 'features' when the teacher reads raw columns, else 'columns'."""
    if players == "auto":
        return "features" if raw_teacher else "columns"
    if players == "columns" and raw_teacher:
        raise ConfigError("explain.players=columns: a teacher that reads raw columns has no encoded columns to "
                          "explain; use explain.players=features (or auto)")
    return players


@dataclass
class LogitAttributions:
    """φ for every raw logit: values (rows, columns, classes), and the explainer that produced them."""

    values: np.ndarray
    explainer: str


def _boosted(ensemble: TreeEnsemble, X: np.ndarray, background: np.ndarray) -> LogitAttributions:
    """Interventional TreeSHAP of each output's trees (kdx.models.ensemble: HistGBT, XGBoost, LightGBM and
    CatBoost read into one form), one explanation per class: much faster than the stacked multiclass model."""
    import shap

    per_output = []
    for k in range(len(ensemble.trees)):
        explainer = shap.TreeExplainer(ensemble.shap_model(k), data=background.astype(np.float64),
                                       feature_perturbation="interventional", model_output="raw")
        per_output.append(explainer.shap_values(X.astype(np.float64), check_additivity=False))
    values = np.stack(per_output, axis=-1)
    if ensemble.binary:  # logits are [0, z]
        values = np.concatenate([np.zeros_like(values), values], axis=-1)
    return LogitAttributions(values, "TreeExplainer (interventional, per class)")


def _sklearn_tree(model: TreeClassifier, X: np.ndarray, background: np.ndarray) -> LogitAttributions:
    import shap

    t = model.model_.tree_
    leaf = t.children_left == -1
    tree = {
        "children_left": t.children_left.astype(np.int64), "children_right": t.children_right.astype(np.int64),
        "children_default": t.children_left.astype(np.int64),  # inputs are imputed: no missing values
        "features": np.where(leaf, -2, t.feature).astype(np.int64), "thresholds": t.threshold.astype(np.float64),
        "values": model.leaf_logits(), "node_sample_weight": t.weighted_n_node_samples.astype(np.float64),
    }
    explainer = shap.TreeExplainer({"trees": [tree]}, data=background.astype(np.float64),
                                   feature_perturbation="interventional", model_output="raw")
    values = np.asarray(explainer.shap_values(X.astype(np.float64), check_additivity=False), dtype=np.float64)
    return LogitAttributions(values.reshape(len(X), X.shape[1], -1), "TreeExplainer (interventional, leaf logits)")


def is_tree_model(model: Classifier) -> bool:
    """Explained exactly by TreeSHAP: a decision tree, or boosted trees (anything with an `ensemble()`)."""
    return isinstance(model, TreeClassifier) or hasattr(model, "ensemble")


def logit_attributions(model: Classifier, X: np.ndarray, background: np.ndarray) -> LogitAttributions:
    """Exact interventional SHAP values of each raw logit of a tree model."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # shap's deprecation chatter; results are checked for additivity
        if isinstance(model, TreeClassifier):
            return _sklearn_tree(model, X, background)
        return _boosted(model.ensemble(), X, background)


def attributions(model: Classifier, X: np.ndarray, background: np.ndarray, A: np.ndarray, per_class: bool,
                 classes: np.ndarray, seed: int = 0, method: str = "auto", permutations: int = 10,
                 features: np.ndarray | None = None) -> tuple[np.ndarray, str]:
    """Attributions (rows, players) of the explained output, and the name of the explainer that ran.
    `method`: auto (per model family), permutation or exact (model-agnostic, kdx.measure.shapley). `features`: each
    encoded column's original feature, for the game whose players are the features (X, background encoded);
    a model that reads raw rows is given raw rows and is always in that game."""
    weights = A[:, classes].T if per_class else np.repeat(A[:, :1].T, len(X), axis=0)
    raw = reads_raw(model)
    logits, dtype = (model.raw_logits, np.float64) if raw else (model.logits, np.float32)
    game = raw or features is not None
    suffix = ", players = original features" if game else ""
    if method == "exact":
        phi = exact_shapley(logits, X, background, weights, features, dtype)
        return phi, f"exact Shapley (all 2^{phi.shape[1]} coalitions){suffix}"
    if method == "permutation" or game or not (isinstance(model, MLPClassifier) or is_tree_model(model)):
        return (permutation_shapley(logits, X, background, weights, permutations, seed, features, dtype),
                f"permutation sampling ({permutations} antithetic pairs, seeded){suffix}")
    if isinstance(model, MLPClassifier):
        return deeplift(model.net_, X, background, weights), "DeepLIFT rescale (as shap.DeepExplainer), batched"
    raw = logit_attributions(model, X, background)
    return explained_output(raw.values, A, per_class, classes), raw.explainer


@dataclass
class Explanation:
    columns: np.ndarray  # (rows, encoded columns)
    additivity_error: float
    explainer: str
    seconds: float


def explain(model: Classifier, X: np.ndarray, background: np.ndarray, A: np.ndarray, per_class: bool,
            classes: np.ndarray, seed: int = 0, method: str = "auto", permutations: int = 10,
            features: np.ndarray | None = None) -> Explanation:
    """Attributions of the explained output per player (encoded column, or original feature: see
    `attributions`), with the worst additivity error |Σφ − (g(x) − E_background g)| over rows."""
    start = time.perf_counter()
    phi, name = attributions(model, X, background, A, per_class, classes, seed, method, permutations, features)
    logits = model.raw_logits if reads_raw(model) else model.logits
    g = explained_output(logits(X).astype(np.float64), A, per_class, classes)
    g_bg = logits(background).astype(np.float64) @ A  # (bg, m)
    base = g_bg.mean(0)[classes] if per_class else g_bg.mean(0)[0]
    error = float(np.abs(phi.sum(1) - (g - base)).max())
    return Explanation(phi, error, name, time.perf_counter() - start)

@dataclass
class ExplainContext:
    """Everything that makes the game the same for teacher and students: background rows, explained rows,
    output combination, the teacher's class per row, and the seeded perturbations for stability."""

    background: np.ndarray
    X: np.ndarray
    A: np.ndarray
    per_class: bool
    classes: np.ndarray
    X_noisy: np.ndarray
    noisy_classes: np.ndarray
    X_val: np.ndarray | None
    val_classes: np.ndarray | None
    draws: int
    top_k: int
    seed: int
    method: str = "auto"
    permutations: int = 10
    # (rows, draws, original features): did the stability perturbation change that feature in that draw?
    perturbed: np.ndarray | None = None
    # The feature game: each encoded column's original feature (None: the players are the columns).
    features: np.ndarray | None = None
    # The same rows as raw code matrices (kdx.data.raw), for a model that reads raw rows: X, background, noisy, val.
    raw: dict[str, np.ndarray] | None = None

    @classmethod
    def build(cls, teacher: Classifier, n_numeric: int, X_train: np.ndarray, X_test: np.ndarray,
              settings: ExplainSettings, seed: int, X_val: np.ndarray | None = None,
              column_feature: np.ndarray | None = None, preprocessor=None) -> ExplainContext:
        """Stability perturbations: Gaussian noise on the first `n_numeric` (standardized numeric) columns,
        and, given `column_feature` (encoded column → original feature), each categorical feature resampled
        with probability `categorical_resample` from its training marginal, so one-hot rows stay valid.
        A teacher that reads raw rows is given X_train/X_test/X_val as kdx.data.rows.Rows (their raw code rows
        with them); a perturbed row's raw form is the clean raw row moved by the same perturbation
        (kdx.data.raw.RawCodec.perturb, with the seed's `preprocessor`)."""
        rng = np.random.default_rng(seed)
        n_bg = min(settings.background, len(X_train))
        bg_rows = np.sort(rng.choice(len(X_train), n_bg, replace=False))
        background = X_train[bg_rows]
        X = X_test[: settings.rows]
        teacher_logits = teacher.logits(X)
        A, per_class = output_matrix(teacher_logits.shape[1], settings.output)
        classes = teacher_logits.argmax(1)
        blocks = _categorical_blocks(column_feature, n_numeric) if settings.categorical_resample > 0 else []
        # With nothing to perturb stability is undefined, not a perfect 1.
        n_stab = min(settings.stability_rows, len(X)) if n_numeric > 0 or blocks else 0
        noisy = np.repeat(X[:n_stab, None, :], settings.stability_draws, axis=1)
        noisy[..., :n_numeric] += rng.normal(0.0, settings.noise_sigma, size=noisy[..., :n_numeric].shape)
        n_features = (int(column_feature.max()) + 1) if column_feature is not None and len(column_feature) else None
        perturbed = None
        if n_features is not None:
            perturbed = np.zeros((n_stab, settings.stability_draws, n_features), dtype=bool)
            perturbed[..., :n_numeric] = True  # Gaussian noise moves every numeric feature
        # Each level's training count from one pass down the columns (X_train[:, cols] would copy a block's rows).
        counts = np.asarray(X_train, dtype=np.float32).sum(0, dtype=np.float64) if blocks else None
        for cols in blocks:
            marginal = counts[cols]
            if marginal.sum() <= 0:
                continue
            resample = rng.random(noisy.shape[:2]) < settings.categorical_resample
            level = rng.choice(len(cols), size=noisy.shape[:2], p=marginal / marginal.sum())
            onehot = np.eye(len(cols), dtype=noisy.dtype)[level]
            block = noisy[..., cols]
            noisy[..., cols] = np.where(resample[..., None], onehot, block)
            # Resampling can draw the row's own level: only a different level counts as perturbed.
            perturbed[..., column_feature[cols[0]]] = (noisy[..., cols] != block).any(-1)
        Xv = None if X_val is None else X_val[: settings.rows]
        noisy = noisy.reshape(-1, X.shape[1]).astype(np.float32)
        players = resolve_players(settings.players, reads_raw(teacher))
        if players == "features" and column_feature is None:
            raise KdxError("explain.players=features needs each encoded column's original feature")
        raw_rows = None
        if reads_raw(teacher):
            if getattr(X, "raw", None) is None or perturbed is None or preprocessor is None:
                raise KdxError("a teacher that reads raw rows needs the rows' raw values (kdx.data.rows.Rows), the "
                               "perturbed features and the seed's preprocessing")
            draws = settings.stability_draws
            clean = np.repeat(X.raw[:n_stab], draws, axis=0)
            clean_encoded = np.repeat(np.asarray(X[:n_stab]), draws, axis=0)
            changed = perturbed.reshape(len(clean), -1)
            raw_rows = {"X": X.raw, "background": background.raw,
                        "noisy": (teacher.perturbed(clean, clean_encoded, noisy, changed, preprocessor) if len(clean)
                                  else clean),
                        "val": None if Xv is None else Xv.raw}
        val_classes = None if Xv is None else teacher.logits(Xv).argmax(1)
        # the context keeps plain arrays: its rows' raw forms, where a teacher needs them, are in raw_rows
        background, X, Xv = np.asarray(background), np.asarray(X), None if Xv is None else np.asarray(Xv)
        return cls(background, X, A, per_class, classes, noisy,
                   np.repeat(classes[:n_stab], settings.stability_draws), Xv,
                   val_classes, settings.stability_draws,
                   settings.top_k, seed, settings.method, settings.permutations, perturbed,
                   column_feature if players == "features" else None, raw_rows)

    @property
    def players(self) -> str:
        return "columns" if self.features is None else "features"

    def model_evaluations(self) -> int:
        """Rows one model is evaluated on with a model-agnostic method: test, perturbed and validation rows."""
        rows = len(self.X) + len(self.X_noisy) + (0 if self.X_val is None else len(self.X_val))
        players = self.X.shape[1] if self.features is None else int(self.features.max()) + 1
        method = "permutation" if self.features is not None and self.method == "auto" else self.method
        return rows * evaluations_per_row(method, players, len(self.background), self.permutations)

    def rows(self, model: Classifier, part: str) -> np.ndarray:
        """The explained rows `part` (X, noisy, val) in the model's own input space."""
        if reads_raw(model):
            return self.raw[part]
        return {"X": self.X, "noisy": self.X_noisy, "val": self.X_val}[part]

    def predict(self, model: Classifier, part: str) -> np.ndarray:
        rows = self.rows(model, part)
        return (model.raw_logits(rows) if reads_raw(model) else model.logits(rows)).argmax(1)

    def explain(self, model: Classifier, part: str, classes: np.ndarray) -> Explanation:
        raw = reads_raw(model)
        background = self.raw["background"] if raw else self.background
        return explain(model, self.rows(model, part), background, self.A, self.per_class, classes, self.seed,
                       self.method, self.permutations, None if raw else self.features)


def _categorical_blocks(column_feature: np.ndarray | None, n_numeric: int) -> list[np.ndarray]:
    """The encoded columns of each categorical (one-hot) feature."""
    if column_feature is None:
        return []
    return [np.flatnonzero(column_feature == j) for j in np.unique(column_feature) if j >= n_numeric]


@dataclass
class ModelExplanation:
    metrics: dict  # stability, label flips, additivity error, time
    grouped: np.ndarray  # (rows, original features)
    columns: np.ndarray  # (rows, encoded columns)
    val_grouped: np.ndarray | None
    explainer: str


def explain_model(model: Classifier, ctx: ExplainContext, group) -> ModelExplanation:
    """Attributions of one model in the shared game, and its stability under the shared perturbations.
    `group` maps per-column attributions to original features."""
    if ctx.features is not None:  # the players are the features already
        def group(values):
            return values
    clean = ctx.explain(model, "X", ctx.classes)
    grouped = group(clean.columns)
    seconds, worst_additivity = clean.seconds, clean.additivity_error
    n_stab = len(ctx.X_noisy) // ctx.draws
    if n_stab:
        noisy = ctx.explain(model, "noisy", ctx.noisy_classes)
        noisy_grouped = group(noisy.columns).reshape(n_stab, ctx.draws, -1)
        flips = ctx.predict(model, "noisy") != np.repeat(ctx.predict(model, "X")[:n_stab], ctx.draws)
        seconds, worst_additivity = seconds + noisy.seconds, max(worst_additivity, noisy.additivity_error)
        robustness = {**stability(grouped[:n_stab], noisy_grouped, ctx.perturbed),
                      "stability_label_flips": float(flips.mean())}
    else:
        robustness = {"stability": float("nan"), "stability_worst": float("nan"),
                      "stability_excluded": len(ctx.X), "stability_label_flips": float("nan"),
                      "stability_perturbed_share": float("nan")}
    val_grouped = None
    if ctx.X_val is not None:
        val = ctx.explain(model, "val", ctx.val_classes)
        val_grouped, seconds = group(val.columns), seconds + val.seconds
    metrics = {
        **robustness,
        "additivity_error": worst_additivity,
        "explain_seconds": seconds,
    }
    return ModelExplanation(metrics, grouped, clean.columns.astype(np.float32), val_grouped, clean.explainer)


def compare(teacher: ModelExplanation, student: ModelExplanation, top_k: int) -> dict:
    """Agreement of a student's attributions with the teacher's (test rows; cosine/MAD on validation too)."""
    t, s = teacher.grouped, student.grouped
    cos, cos_excluded = cosine(t, s)
    rho, rho_excluded = spearman(t, s)
    out = {"cosine": cos, "cosine_global": cosine_global(t, s), "mad": mad(t, s), "mad_total": mad_total(t, s),
           "topk_agreement": topk_agreement(t, s, top_k), "spearman": rho, "cosine_excluded": cos_excluded,
           "spearman_excluded": rho_excluded}
    if teacher.val_grouped is not None and student.val_grouped is not None:
        out["val_cosine"] = cosine(teacher.val_grouped, student.val_grouped)[0]
        out["val_mad"] = mad(teacher.val_grouped, student.val_grouped)
    return out


def align(models: dict[str, Classifier], n_numeric: int, group, X_train: np.ndarray, X_test: np.ndarray,
          settings: ExplainSettings, seed: int, X_val: np.ndarray | None = None) -> dict[str, ModelExplanation]:
    """Explain the first model (the teacher) and the others in one game; compare each other model with the
    first (its `metrics` gain cosine, MAD, top-k agreement, Spearman, and val_cosine/val_mad with X_val)."""
    teacher_name, teacher = next(iter(models.items()))
    ctx = ExplainContext.build(teacher, n_numeric, X_train, X_test, settings, seed, X_val)
    out = {name: explain_model(model, ctx, group) for name, model in models.items()}
    for name in list(models)[1:]:
        out[name].metrics.update(compare(out[teacher_name], out[name], settings.top_k))
    return out
