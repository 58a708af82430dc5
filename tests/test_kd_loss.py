import math

import pytest
import torch
import torch.nn.functional as F

from kdx import kd_loss


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(16, 5, generator=g, dtype=torch.float64)
    t = torch.randn(16, 5, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, 5, (16,), generator=g)
    return s, t, y


def manual_kd(s, t, y, tau, alpha):
    """Independent reference: the formula written out with explicit sums over classes and rows."""
    p_t = torch.softmax(t / tau, dim=1)
    log_p_s = torch.log_softmax(s / tau, dim=1)
    kl = (p_t * (torch.log(p_t) - log_p_s)).sum(dim=1).mean()
    ce = -torch.log_softmax(s, dim=1)[torch.arange(len(y)), y].mean()
    return alpha * ce + (1 - alpha) * tau**2 * kl


def test_alpha_one_is_exactly_cross_entropy(batch):
    s, t, y = batch
    assert torch.equal(kd_loss(s, t, y, tau=4.0, alpha=1.0), F.cross_entropy(s, y))
    assert torch.equal(kd_loss(s, None, y, tau=4.0, alpha=1.0), F.cross_entropy(s, y))


@pytest.mark.parametrize("tau,alpha", [(1.0, 0.0), (3.0, 0.5), (5.0, 0.1), (0.5, 0.9)])
def test_matches_written_out_formula(batch, tau, alpha):
    s, t, y = batch
    assert torch.allclose(kd_loss(s, t, y, tau, alpha), manual_kd(s, t, y, tau, alpha), atol=1e-12)


def test_equal_logits_give_zero_kl(batch):
    s, _, y = batch
    assert kd_loss(s, s.clone(), y, tau=3.0, alpha=0.0).abs() < 1e-12
    # alpha=0.3: only the CE part remains.
    assert torch.allclose(kd_loss(s, s.clone(), y, 3.0, 0.3), 0.3 * F.cross_entropy(s, y), atol=1e-12)


def test_tau_squared_scaling_applies_at_alpha_zero(batch):
    s, t, y = batch
    for tau in (1.0, 2.0, 5.0):
        kl = F.kl_div(F.log_softmax(s / tau, 1), F.softmax(t / tau, 1), reduction="batchmean")
        assert torch.allclose(kd_loss(s, t, y, tau, 0.0), tau**2 * kl, atol=1e-12)


def test_shift_invariance_of_logits(batch):
    s, t, y = batch
    shifted = t + torch.randn(len(t), 1, dtype=torch.float64) * 10
    assert torch.allclose(kd_loss(s, t, y, 3.0, 0.5), kd_loss(s, shifted, y, 3.0, 0.5), atol=1e-10)


def test_gradient_matches_finite_differences(batch):
    s, t, y = batch
    s = s.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda z: kd_loss(z, t, y, 3.0, 0.4), (s,), eps=1e-6, atol=1e-7)


def test_batch_mean_not_sum(batch):
    s, t, y = batch
    doubled = kd_loss(torch.cat([s, s]), torch.cat([t, t]), torch.cat([y, y]), 2.0, 0.5)
    assert math.isclose(float(doubled), float(kd_loss(s, t, y, 2.0, 0.5)), rel_tol=1e-12)


@pytest.mark.parametrize("tau,alpha", [(0.0, 0.5), (-1.0, 0.5), (1.0, -0.1), (1.0, 1.5)])
def test_rejects_out_of_range(batch, tau, alpha):
    s, t, y = batch
    with pytest.raises(ValueError):
        kd_loss(s, t, y, tau, alpha)
