"""The one-by-one MLP trainer's randomness: dropout masks from the model's seed (kdx.models.nets.Dropout)."""

from __future__ import annotations

import numpy as np
import torch
from scipy import stats

from kdx.models.mlp import Dropout, MLPClassifier, build_mlp


def test_dropout_drops_at_its_rate_and_keeps_the_expectation():
    p = 0.1
    layer = Dropout(p)
    layer.generator = np.random.default_rng(3)
    x = torch.ones(2_000, 500, requires_grad=True)
    out = layer(x)
    dropped = int((out == 0).sum())
    threshold = round(p * 2**16)  # the rate drawn, p′ = threshold / 2¹⁶, within 2⁻¹⁷ of p
    assert abs(threshold / 2**16 - p) <= 2**-17
    # the drop count is Binomial(n, p′): an exact test (scipy), not a tolerance chosen to pass
    assert stats.binomtest(dropped, x.numel(), threshold / 2**16).pvalue > 1e-3
    kept = out[out != 0].detach()
    torch.testing.assert_close(kept, torch.full_like(kept, 2**16 / (2**16 - threshold)), rtol=0, atol=0)
    assert abs(float(out.detach().mean()) - 1) < 4 * np.sqrt(p / (1 - p) / x.numel())  # unbiased: E[out] = x
    out.sum().backward()
    torch.testing.assert_close(x.grad, out.detach(), rtol=0, atol=0)  # d out / d x = the scaled mask
    layer.eval()
    assert torch.equal(layer(x), x)


def test_dropout_masks_follow_the_seed():
    x = torch.ones(64, 32)
    masks = []
    for seed in (0, 0, 1):
        layer = Dropout(0.3)
        layer.generator = np.random.default_rng(seed)
        masks.append(layer(x))
    assert torch.equal(masks[0], masks[1]) and not torch.equal(masks[0], masks[2])
    without = Dropout(0.3)  # no generator (a net built outside fit): torch's own dropout
    assert 0.2 < float((without(torch.ones(100, 100)) == 0).float().mean()) < 0.4


def test_a_net_with_dropout_trains_to_the_same_weights_from_the_same_seed():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 5)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
    fits = [MLPClassifier(hidden=(16, 8), dropout=0.2, epochs=3, batch_size=32, seed=seed).fit(X, y, X, y, 2)
            for seed in (7, 7, 8)]
    weights = [torch.cat([p.flatten() for p in m.net_.parameters()]) for m in fits]
    assert torch.equal(weights[0], weights[1]) and not torch.equal(weights[0], weights[2])
    assert all(m.generator is None for m in fits[0].net_ if isinstance(m, Dropout))  # not saved with the model
    assert sum(isinstance(m, Dropout) for m in build_mlp(5, (16, 8), 2, 0.2)) == 2
