"""Input gradients of the explained output (the scalar the SHAP game explains), for the gradient-based
objectives: teacher gradients once per seed, student gradients differentiably inside the loss."""

from __future__ import annotations

import numpy as np
import torch

from kdx.distill.objectives.base import Objective
from kdx.models.base import require_float
from kdx.models.outputs import output_matrix

EPS = 1e-12


def output_weights(teacher_logits: np.ndarray, output: str) -> np.ndarray:
    """Per row, the weights w with explained output = z·w: margin z₁ − z₀ (binary) or the centred logit of
    the teacher's predicted class (multiclass), as in kdx.measure.explain."""
    A, per_class = output_matrix(teacher_logits.shape[1], output)
    if per_class:
        return A[:, teacher_logits.argmax(1)].T.astype(np.float32)
    return np.repeat(A[:, :1].T, len(teacher_logits), axis=0).astype(np.float32)


def input_gradients(net: torch.nn.Module, x: torch.Tensor, w: torch.Tensor, create_graph: bool) -> torch.Tensor:
    """∂(z(x)·w)/∂x per row (rows are independent, so one backward pass gives every row's gradient)."""
    if not x.requires_grad:
        x = x.detach().requires_grad_(True)
    out = (net(x) * w).sum()
    return torch.autograd.grad(out, x, create_graph=create_graph)[0]


def teacher_gradients(net: torch.nn.Module, X: np.ndarray, W: np.ndarray, chunk: int = 8192) -> np.ndarray:
    net = net.eval()
    parts = []
    for i in range(0, len(X), chunk):
        x = torch.as_tensor(X[i: i + chunk], dtype=torch.float32)
        parts.append(input_gradients(net, x, torch.as_tensor(W[i: i + chunk]), create_graph=False).numpy())
    return np.concatenate(parts) if parts else np.zeros_like(X)


def normalized(g: torch.Tensor) -> torch.Tensor:
    """g / ‖g‖₂ per row, over the last dimension (zero rows stay zero)."""
    return g / g.norm(dim=-1, keepdim=True).clamp_min(EPS)


def membership(column_feature: np.ndarray) -> np.ndarray:
    """(encoded columns × original features) 0/1 matrix: attributions @ M sums one-hot columns per feature."""
    m = np.zeros((len(column_feature), int(column_feature.max()) + 1), dtype=np.float32)
    m[np.arange(len(column_feature)), column_feature] = 1
    return m


class GradientMatching(Objective):
    """Shared by the gradient-based objectives: Hinton's loss plus `lam` times a term that compares the
    student's input gradients of the explained output with the teacher's (MLP teacher and student)."""

    needs_gradients = True
    logit_signals = False

    def __init__(self, tau: float | None = None, alpha: float = 0.5, lam: float = 1.0):
        super().__init__(tau, alpha)
        self.lam = require_float("kd.lam", lam, 0.0)

    def settings(self) -> dict:
        return {**super().settings(), "lam": self.lam}

    def term_settings(self, signals):
        return {"lam": self.lam}

    def describe(self, signals):
        return f"{self.name} λ={self.lam:g}, " + super().describe(signals)

    @staticmethod
    def teacher_pass(teacher, X: np.ndarray, output: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The teacher's logits, the explained-output weights and its input gradients on rows X."""
        logits = teacher.logits(X).astype(np.float32)
        W = output_weights(logits, output)
        return logits, W, teacher_gradients(teacher.net_, X, W).astype(np.float32)
