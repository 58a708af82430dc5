"""Distillation objectives: each loss against an independent form (explicit sums, identities, gradcheck),
their refusals, and a sweep over all of them through the real command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from kdx.distill.objectives.attribution import Attribution, attribution_term
from kdx.distill.objectives.base import TeacherSignals
from kdx.distill.objectives.dkd import DKD, dkd_terms
from kdx.distill.objectives.hinton import Hinton
from kdx.distill.objectives.jacobian import Jacobian, jacobian_term
from kdx.distill.objectives.label_smoothing import LabelSmoothing, matching_epsilon, smoothed_entropy
from kdx.errors import ConfigError
from kdx.models import MLPClassifier, TreeClassifier
from kdx.models.losses import OneStudentLoss, kd_loss
from kdx.run.building import build_objective

CONF = Path(__file__).resolve().parents[1] / "conf"


def _logits(seed=0, rows=16, classes=5):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(rows, classes, generator=g, dtype=torch.float64) * 2,
            torch.randn(rows, classes, generator=g, dtype=torch.float64) * 2,
            torch.randint(0, classes, (rows,), generator=g))


def test_dkd_terms_against_explicit_sums_and_the_kl_identity():
    zs, zt, y = _logits()
    tau = 3.0
    tckd, nckd, pt = dkd_terms(zs, zt, y, tau)
    ps, pt_full = F.softmax(zs / tau, 1).numpy(), F.softmax(zt / tau, 1).numpy()
    for i, c in enumerate(y.tolist()):
        bs, bt = np.array([ps[i, c], 1 - ps[i, c]]), np.array([pt_full[i, c], 1 - pt_full[i, c]])
        assert tckd[i].item() == pytest.approx(float((bt * np.log(bt / bs)).sum()), rel=1e-9)
        others = [k for k in range(zs.shape[1]) if k != c]
        qs = ps[i, others] / ps[i, others].sum()
        qt = pt_full[i, others] / pt_full[i, others].sum()
        assert nckd[i].item() == pytest.approx(float((qt * np.log(qt / qs)).sum()), rel=1e-6)
        kl = float((pt_full[i] * np.log(pt_full[i] / ps[i])).sum())
        # KL = TCKD + (1 − p_t)·NCKD (Zhao et al., eq. 3)
        assert kl == pytest.approx(tckd[i].item() + (1 - pt[i].item()) * nckd[i].item(), rel=1e-6)


def test_dkd_with_the_weights_that_undo_the_decoupling_is_hintons_kl_term():
    zs, zt, y = _logits(1)
    tau = 2.0
    tckd, nckd, pt = dkd_terms(zs, zt, y, tau)
    undone = tau**2 * (tckd + (1 - pt) * nckd).mean()
    hinton_kl = kd_loss(zs, zt, y, tau, alpha=0.0)  # (1 − α)·τ²·KL at α = 0
    assert undone.item() == pytest.approx(hinton_kl.item(), rel=1e-6)


def test_dkd_loss_weights_and_warmup():
    zs, zt, y = _logits(2)
    obj = DKD(tau=2.0, alpha=0.3, dkd_alpha=1.5, dkd_beta=4.0, warmup=4)
    net = lambda x: x  # noqa: E731 (the "network" returns its input: the loss sees zs)
    tckd, nckd, _ = dkd_terms(zs, zt, y, 2.0)
    for epoch, ramp in ((1, 0.25), (2, 0.5), (9, 1.0)):
        expected = 0.3 * F.cross_entropy(zs, y) + 0.7 * 4.0 * ramp * (1.5 * tckd.mean() + 4.0 * nckd.mean())
        got = OneStudentLoss(obj.student_loss(None), "cpu")(net, zs, y, {"teacher_logits": zt}, {}, epoch)
        assert got.item() == pytest.approx(expected.item(), rel=1e-7)  # the term's settings are float32


def test_label_smoothing_is_cross_entropy_on_smoothed_targets_and_matches_the_entropy():
    zs, _, y = _logits(3, classes=4)
    eps = 0.2
    signals = TeacherSignals({}, {"epsilon": np.asarray(eps, dtype=np.float32)})
    got = OneStudentLoss(LabelSmoothing(epsilon=eps).student_loss(signals), "cpu")(lambda x: x, zs, y, {}, {}, 1)
    q = (1 - eps) * F.one_hot(y, 4).double() + eps / 4
    explicit = -(q * F.log_softmax(zs, 1)).sum(1).mean()
    assert got.item() == pytest.approx(explicit.item(), rel=1e-7)  # ε as the signals carry it: float32
    for k in (2, 3, 7):
        for h in (0.05, 0.4, 0.9):
            target = min(h, np.log(k) - 1e-9)
            assert smoothed_entropy(matching_epsilon(target, k), k) == pytest.approx(target, abs=1e-9)
    assert matching_epsilon(10.0, 3) == 1.0  # above the uniform's entropy: the uniform


def _mlp(seed, d=5, k=3, dtype=torch.float64):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(d, 6), torch.nn.Tanh(), torch.nn.Linear(6, k)).to(dtype)
    return net


def test_gradient_terms_are_zero_for_identical_models_and_pass_gradcheck():
    x = torch.randn(8, 5, dtype=torch.float64)
    w = torch.randn(8, 3, dtype=torch.float64)
    net = _mlp(0)
    from kdx.distill.objectives.gradients import input_gradients

    g = input_gradients(net, x, w, create_graph=True)
    assert jacobian_term(g, g.detach()).item() == pytest.approx(0.0, abs=1e-12)
    mean = x.mean(0, keepdim=True)
    M = torch.eye(5, dtype=torch.float64)
    a = (g * (x - mean)) @ M
    assert attribution_term(a, a.detach()).item() == pytest.approx(0.0, abs=1e-12)
    g_t = input_gradients(_mlp(1), x, w, create_graph=False).detach()
    a_t = (g_t * (x - mean)) @ M
    assert torch.autograd.gradcheck(lambda s: jacobian_term(s, g_t), (g.detach().clone().requires_grad_(True),))
    assert torch.autograd.gradcheck(lambda s: attribution_term(s, a_t), (a.detach().clone().requires_grad_(True),))
    # Through the network: the loss is differentiable in the student's weights (double backprop).
    params = list(net.parameters())
    loss = jacobian_term(input_gradients(net, x, w, create_graph=True), g_t)
    grads = torch.autograd.grad(loss, params, allow_unused=True)  # the last bias does not move gradients
    eps = 1e-6
    with torch.no_grad():
        params[0][0, 0] += eps
    up = jacobian_term(input_gradients(net, x, w, create_graph=True), g_t).item()
    with torch.no_grad():
        params[0][0, 0] -= 2 * eps
    down = jacobian_term(input_gradients(net, x, w, create_graph=True), g_t).item()
    assert grads[0][0, 0].item() == pytest.approx((up - down) / (2 * eps), rel=1e-4, abs=1e-8)


def _data(n=300, d=6, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 1).astype(int) * (classes > 2)
    return X, y


@pytest.mark.parametrize("objective", [Hinton(), LabelSmoothing(), DKD(), Jacobian(lam=0.5), Attribution(lam=0.5)])
def test_every_objective_trains_an_mlp_student(objective):
    X, y = _data()
    teacher = MLPClassifier(hidden=(16,), epochs=5, seed=0).fit(X[:200], y[:200], X[200:], y[200:], 3)
    signals = objective.signals(teacher, X[:200], y[:200], 3, np.arange(6), "centred")
    student = MLPClassifier(hidden=(8,), epochs=3, seed=0).fit(X[:200], y[:200], X[200:], y[200:], 3,
                                                               objective=objective, signals=signals)
    assert np.isfinite(student.logits(X)).all() and student.history_["epochs_run"] >= 1


@pytest.mark.parametrize("tau, alpha", [(3.0, 0.4), (1.0, 0.0), (4.0, 1.0), (2.0, 0.9)])
def test_hinton_objective_trains_on_the_study_loss_operation_for_operation(tau, alpha):
    """A student's loss under kd=hinton, one by one (kdx.models.losses.OneStudentLoss), is kdx.kd_loss: the same
    value and gradient to the last bit; and a student trained with it is deterministic."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(64, 3, generator=g).requires_grad_()
    zt, y = torch.randn(64, 3, generator=g), torch.randint(0, 3, (64,), generator=g)
    ours = OneStudentLoss(Hinton(tau, alpha).student_loss(None), "cpu")(lambda x: x, z, y, {"teacher_logits": zt},
                                                                         {}, 1)
    (ours_grad,) = torch.autograd.grad(ours, z)
    study = kd_loss(z, zt, y, tau, alpha)
    (study_grad,) = torch.autograd.grad(study, z)
    assert torch.equal(ours, study) and torch.equal(ours_grad, study_grad)
    X, y = _data()
    teacher = MLPClassifier(hidden=(16,), epochs=5, seed=0).fit(X[:200], y[:200], X[200:], y[200:], 3)
    obj = Hinton(tau, alpha)
    signals = obj.signals(teacher, X[:200], y[:200], 3, np.arange(6), "centred")
    a, b = (MLPClassifier(hidden=(8,), epochs=4, seed=1).fit(X[:200], y[:200], X[200:], y[200:], 3, objective=obj,
                                                             signals=signals) for _ in range(2))
    assert np.array_equal(a.logits(X), b.logits(X))


def test_refusals_name_the_alternative():
    with pytest.raises(ConfigError, match="kd=hinton for binary"):
        DKD().check(2, "torch", "torch")
    with pytest.raises(ConfigError, match="kd=hinton or kd=label_smoothing"):
        Jacobian().check(3, "torch", "sklearn")
    with pytest.raises(ConfigError, match="teacher's input gradients"):
        Attribution().check(3, "sklearn", "torch")
    DKD().check(3, "torch", "torch")
    LabelSmoothing().check(2, "sklearn", "sklearn")  # soft labels: trees welcome


def test_tree_students_take_soft_label_objectives():
    X, y = _data(classes=2)
    teacher = MLPClassifier(hidden=(16,), epochs=5, seed=0).fit(X[:200], y[:200], X[200:], y[200:], 2)
    for objective in (Hinton(), LabelSmoothing(epsilon=0.1)):
        signals = objective.signals(teacher, X[:200], y[:200], 2, np.arange(6), "margin")
        tree = TreeClassifier(max_depth=3).fit(X[:200], y[:200], X[200:], y[200:], 2, objective=objective,
                                               signals=signals)
        assert tree.model_.get_depth() <= 3


def test_objectives_are_built_from_their_yaml():
    for name, cls in (("hinton", Hinton), ("label_smoothing", LabelSmoothing), ("dkd", DKD), ("jacobian", Jacobian),
                      ("attribution", Attribution)):
        node = OmegaConf.load(CONF / "kd" / f"{name}.yaml")
        obj = build_objective(node)
        assert isinstance(obj, cls) and obj.name == name and obj.settings()["tau"] == 4.0
    assert isinstance(build_objective(OmegaConf.create({"tau": 2.0, "alpha": 0.1})), Hinton)  # kdx 0.1 configs
    with pytest.raises(ConfigError, match="kd.lam"):
        build_objective(OmegaConf.create({"_target_": "kdx.distill.objectives.jacobian.Jacobian", "lam": -1}))


@pytest.mark.slow
def test_methods_sweep_through_the_cli(tmp_path):
    res = subprocess.run([sys.executable, "-m", "kdx", "run", "+sweep=methods", "+smoke=on", "seeds=[0,1,2]",
                          "explain.rows=20", "profile.repeats=5", f"hydra.sweep.dir={tmp_path}"],
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    methods = {}
    for job in tmp_path.iterdir():
        if (job / "summary.json").is_file():
            methods[json.loads((job / "summary.json").read_text())["kd"]["method"]] = job
    # Adult is binary: DKD does not apply and is skipped with its reason, everything else runs.
    assert set(methods) == {"hinton", "label_smoothing", "jacobian", "attribution"}
    text = (tmp_path / "report.md").read_text()
    assert "Not applicable" in text and "kd=dkd needs 3 or more classes" in text
    assert "## Distillation objectives" in text
    stats = (tmp_path / "report_methods_stats.csv").read_text()
    assert "no KD" in stats and "hinton" in stats
    rows = (methods["jacobian"] / "metrics.csv").read_text()
    assert "jacobian" in rows


@pytest.mark.slow
def test_an_objective_that_does_not_apply_is_one_line(tmp_path):
    res = subprocess.run([sys.executable, "-m", "kdx", "run", "kd=jacobian", "experiment=breast_cancer", "+smoke=on",
                          f"hydra.run.dir={tmp_path}"], capture_output=True, text=True, timeout=300)
    err = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(err) == 1 and "teacher's input gradients" in err[0], res.stderr
