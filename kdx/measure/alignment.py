"""Agreement between two models' attributions, row by row (rows × features arrays)."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

TINY = 1e-12


def _row_norm(a: np.ndarray) -> np.ndarray:
    return np.linalg.norm(a, axis=1)


def cosine(phi_t: np.ndarray, phi_s: np.ndarray) -> tuple[float, int]:
    """Mean over rows of φ_T·φ_S / (‖φ_T‖‖φ_S‖); rows where either norm is ~0 are left out and counted."""
    nt, ns = _row_norm(phi_t), _row_norm(phi_s)
    ok = (nt > TINY) & (ns > TINY)
    values = (phi_t[ok] * phi_s[ok]).sum(1) / (nt[ok] * ns[ok])
    return (float(values.mean()) if ok.any() else float("nan")), int((~ok).sum())


def normalized(phi: np.ndarray) -> np.ndarray:
    """φ / Σ|φ| per row (zero rows stay zero)."""
    total = np.abs(phi).sum(1, keepdims=True)
    return np.divide(phi, total, out=np.zeros_like(phi, dtype=float), where=total > TINY)


def mad(phi_t: np.ndarray, phi_s: np.ndarray) -> float:
    """Mean over rows of (1/d) Σ_j |φ̂_T,j − φ̂_S,j| on normalized importances φ̂ = φ / Σ|φ|.

    Bounded by 2/d (0.067 for 30 features), so it shrinks with the feature count: see `mad_total`."""
    return float(np.abs(normalized(phi_t) - normalized(phi_s)).mean())


def mad_total(phi_t: np.ndarray, phi_s: np.ndarray) -> float:
    """Scale-free MAD: mean over rows of ½ Σ_j |φ̂_T,j − φ̂_S,j| (= d/2 · `mad`), in [0, 1] whatever the
    feature count: 0 for the same normalized attributions, 1 for attributions on disjoint features or of
    opposite sign."""
    return float(0.5 * np.abs(normalized(phi_t) - normalized(phi_s)).sum(1).mean())


def cosine_global(phi_t: np.ndarray, phi_s: np.ndarray) -> float:
    """Cosine of the global importances mean_rows |φ_T| and mean_rows |φ_S| (one vector per model)."""
    gt, gs = np.abs(phi_t).mean(0), np.abs(phi_s).mean(0)
    denom = np.linalg.norm(gt) * np.linalg.norm(gs)
    return float(gt @ gs / denom) if denom > TINY else float("nan")


def topk_agreement(phi_t: np.ndarray, phi_s: np.ndarray, k: int) -> float:
    """Mean over rows of |top-k(|φ_T|) ∩ top-k(|φ_S|)| / k (ties broken by feature order)."""
    k = min(k, phi_t.shape[1])
    top_t = np.argsort(-np.abs(phi_t), axis=1, kind="stable")[:, :k]
    top_s = np.argsort(-np.abs(phi_s), axis=1, kind="stable")[:, :k]
    hits = [len(np.intersect1d(a, b)) for a, b in zip(top_t, top_s)]
    return float(np.mean(hits) / k)


def spearman(phi_t: np.ndarray, phi_s: np.ndarray) -> tuple[float, int]:
    """Mean over rows of Spearman's ρ between |φ_T| and |φ_S| (average ranks for ties); rows where either
    ranking is constant are left out and counted."""
    rt = rankdata(np.abs(phi_t), axis=1)
    rs = rankdata(np.abs(phi_s), axis=1)
    rt -= rt.mean(1, keepdims=True)
    rs -= rs.mean(1, keepdims=True)
    denom = np.sqrt((rt**2).sum(1) * (rs**2).sum(1))
    ok = denom > TINY
    values = (rt[ok] * rs[ok]).sum(1) / denom[ok]
    return (float(values.mean()) if ok.any() else float("nan")), int((~ok).sum())


def stability(phi: np.ndarray, phi_noisy: np.ndarray, perturbed: np.ndarray | None = None) -> dict:
    """1 − ‖φ(x) − φ(x+ε)‖₂ / ‖φ(x)‖₂ for φ of shape (rows, d) and φ_noisy of shape (rows, draws, d).

    The index lies in (−∞, 1]: 1 when the perturbation leaves the attributions unchanged, 0 when it moves
    them by their own norm, below 0 beyond that. Rows with ‖φ(x)‖ ~ 0 have no defined index: they are left
    out and counted. `perturbed` marks the features each draw actually changed, shape (rows, draws, d) or (d,)
    for every draw alike: `stability_perturbed_share` is the mean over rows and draws of the share of the
    clean attribution mass Σ|φ| that sat on changed features (how much of the explanation was tested).
    """
    norm = _row_norm(phi)
    ok = norm > TINY * max(1.0, float(norm.max(initial=0.0)))
    index = 1.0 - np.linalg.norm(phi_noisy[ok] - phi[ok, None, :], axis=2) / norm[ok, None]
    per_row = index.mean(1)
    return {
        "stability": float(per_row.mean()) if ok.any() else float("nan"),
        "stability_worst": float(index.min()) if ok.any() else float("nan"),
        "stability_excluded": int((~ok).sum()),
        "stability_perturbed_share": _perturbed_share(phi[ok], None if perturbed is None else
                                                      np.broadcast_to(perturbed, phi_noisy.shape)[ok]),
    }


def _perturbed_share(phi: np.ndarray, changed: np.ndarray | None) -> float:
    """Mean over rows and draws of Σ_changed |φ| / Σ |φ| (clean attributions; changed: rows × draws × d)."""
    if changed is None or len(phi) == 0:
        return float("nan")
    mass = np.abs(phi)[:, None, :]
    return float(((mass * changed).sum(-1) / np.maximum(mass.sum(-1), TINY)).mean())
