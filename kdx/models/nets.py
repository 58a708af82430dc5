"""The networks behind kdx's MLPs: layers, dropout drawn from a seeded NumPy stream, inference in passes, the
device, and the one line that says where training diverged. Used by one-by-one training (kdx.models.mlp) and
stacked training (kdx.models.stack) alike."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn


class Dropout(nn.Dropout):
    """nn.Dropout whose training masks on the CPU are drawn from `generator` (a numpy PCG64 stream the model
    seeds; `dropout_mask`). Drawing a whole mask from NumPy's PCG64 at once is much cheaper than torch's CPU
    Bernoulli, drawn element by element from its Mersenne Twister (performance page, `teacher`). Without a
    generator, or on another device, it is torch's dropout."""

    generator: np.random.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or self.generator is None or x.device.type != "cpu":
            return super().forward(x)
        return x * dropout_mask(self.generator, tuple(x.shape), self.p)


def mask_stream(seed: int) -> np.random.Generator:
    """The dropout mask stream of a model of seed `seed`: every dropout layer draws from it, in layer order."""
    return np.random.default_rng(seed)


def dropout_mask(generator: np.random.Generator, shape: tuple, p: float) -> torch.Tensor:
    """Dropout's multiplier (float32, `shape`) drawn from `generator` as Dropout draws it: 0 where dropped,
    1/(1 − p′) where kept, p′ = round(p·2¹⁶)/2¹⁶ the rate drawn (|p′ − p| ≤ 2⁻¹⁷: 0.1 drops at 0.1000061), so
    the layer's expected output is its input exactly. Each unit reads 16 bits, a quarter of one of the stream's
    raw 64-bit outputs (not NumPy's `integers`, whose bounded draws cost more per value), and the multiplier is
    built in NumPy, not by torch's cast of a bool tensor: 3x cheaper a mask than uint32s from `integers`
    (performance page, `teacher`)."""
    threshold = round(p * 2**16)
    count = math.prod(shape)
    bits = generator.bit_generator.random_raw(-(-count // 4)).view(np.uint16)[:count].reshape(shape)
    keep = (bits >= threshold).astype(np.float32)
    keep *= np.float32(2**16 / (2**16 - threshold))
    return torch.from_numpy(keep)


def build_mlp(n_in: int, hidden: Sequence[int], n_out: int, dropout: float = 0.0) -> nn.Sequential:
    """Linear → ReLU (→ Dropout) blocks and a linear head.

    Every activation is its own non-inplace module: SHAP's DeepExplainer needs that to attribute.
    """
    layers: list[nn.Module] = []
    width = n_in
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        if dropout > 0:
            layers.append(Dropout(dropout))
        width = h
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


INFERENCE_ROWS = 8_192  # rows per forward pass outside training (a wide network's activations on a whole table)


def forward(net: nn.Module, X) -> torch.Tensor:
    """`net(X)` in passes of at most INFERENCE_ROWS rows, concatenated: on a large table the hidden activations
    of one pass over every row (rows × 512 floats for the study's teacher) would outweigh the table itself.
    Tables of up to INFERENCE_ROWS rows take one pass, as before."""
    x = torch.as_tensor(X, dtype=torch.float32)
    if len(x) <= INFERENCE_ROWS:
        return net(x)
    return torch.cat([net(x[i : i + INFERENCE_ROWS]) for i in range(0, len(x), INFERENCE_ROWS)])


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def divergence(epoch: int, loss: float | None, X: np.ndarray, teacher_logits, tau: float, lr: float) -> str:
    """One line: where training diverged and the likely cause (`loss`: the last training loss, where known)."""
    causes = []
    biggest = float(np.abs(X).max()) if X.size else 0.0
    if not np.isfinite(biggest) or biggest > 1e6:
        causes.append(f"extreme input values (max |x| = {biggest:.3g} after standardization)")
    if teacher_logits is not None and not np.all(np.isfinite(teacher_logits)):
        causes.append("non-finite teacher logits")
    if teacher_logits is not None and tau < 0.05:
        causes.append(f"a tiny temperature (τ = {tau:g})")
    if lr > 0.1:
        causes.append(f"a learning rate too high (lr = {lr:g})")
    cause = "; likely cause: " + ", ".join(causes) if causes else "; lower lr or check the inputs"
    last = "" if loss is None else f" (last training loss {loss})"
    return f"training diverged at epoch {epoch}: non-finite validation loss{last}{cause}"
