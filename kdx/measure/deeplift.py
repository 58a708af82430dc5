"""Batched DeepLIFT (rescale rule) for ReLU MLPs, averaged over background rows: the attributions
`shap.DeepExplainer` computes, for one combination of the logits, without its per-row Python loop.

For each row x and background row r the rescale rule propagates multipliers from the output back to
the input: through Linear layers by their weights, through ReLU by Δrelu/Δz (the ordinary gradient
where |Δz| < 1e-6, as shap does). φ(x) = mean_r (x − r) ⊙ m(x, r); Σφ equals g(x) − mean_r g(r).
Checked against shap.DeepExplainer in the tests.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

EPS = 1e-6


def _layers(net: nn.Sequential) -> list[nn.Module]:
    layers = [m for m in net if not isinstance(m, nn.Dropout)]  # identity at inference
    for m in layers:
        if not isinstance(m, (nn.Linear, nn.ReLU)):
            raise TypeError(f"batched DeepLIFT supports Linear/ReLU/Dropout layers, not {type(m).__name__}")
    return layers


def _forward(layers: list[nn.Module], x: torch.Tensor) -> list[torch.Tensor]:
    """Input of every layer (the last entry is the network output)."""
    inputs = [x]
    for layer in layers:
        inputs.append(layer(inputs[-1]))
    return inputs


# Bytes of the widest (pairs, width) float32 tensor of one chunk: small enough to stay in a core's L2 cache, so the
# rescale rule's elementwise passes read and write cache rather than main memory, and an explanation's memory stays
# a few MB whatever the network's width.
CHUNK_BYTES = 2**21


@torch.inference_mode()
def deeplift(net: nn.Sequential, X: np.ndarray, background: np.ndarray, output_weights: np.ndarray,
             chunk_bytes: int = CHUNK_BYTES) -> np.ndarray:
    """Attributions (rows, features) of g_i = z(x_i) · output_weights[i] for each row i.

    `output_weights` (rows, classes) picks the explained combination of logits per row, e.g. the margin
    z₁ − z₀ or a centred logit. Rows are explained a chunk at a time: as many rows as keep the chunk's
    (rows × background, widest layer) tensors within `chunk_bytes` (at least one row).
    """
    # float32 as the network itself computes; each row's mean over the background is taken in float64.
    layers = [_as(m, torch.float32) for m in _layers(net)]
    R = torch.as_tensor(background, dtype=torch.float32)
    ref = _forward(layers, R)
    W_out = torch.as_tensor(output_weights, dtype=torch.float32)
    widest = max(t.shape[1] for t in ref)
    rows_per_chunk = max(1, chunk_bytes // (4 * widest * len(R)))
    out = np.empty(X.shape, dtype=np.float64)
    for start in range(0, len(X), rows_per_chunk):
        xs = torch.as_tensor(X[start : start + rows_per_chunk], dtype=torch.float32)
        acts = _forward(layers, xs)
        m = W_out[start : start + len(xs), None, :].expand(len(xs), len(R), -1)
        for i in range(len(layers) - 1, -1, -1):
            if isinstance(layers[i], nn.Linear):
                m = m @ layers[i].weight
            else:  # Δrelu/Δz, from the activations already computed; the gradient where |Δz| < EPS
                zx, zr = acts[i][:, None, :], ref[i][None, :, :]
                dz = zx - zr
                rule = (acts[i + 1][:, None, :] - ref[i + 1][None, :, :]).div_(dz)  # inf/nan only where small
                torch.where(dz.abs_() < EPS, (zx > 0).to(dz.dtype), rule, out=rule)
                m = m * rule
        out[start : start + len(xs)] = ((xs[:, None, :] - R[None, :, :]) * m).double().mean(1).numpy()
    return out


def _as(module: nn.Module, dtype) -> nn.Module:
    if isinstance(module, nn.Linear):
        copy = nn.Linear(module.in_features, module.out_features, bias=module.bias is not None)
        copy.load_state_dict(module.state_dict())
        return copy.to(dtype)
    return module
