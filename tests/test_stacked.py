"""Students trained as one stacked pass vs one by one (kdx.distill.stacked).

Tolerance: stacked and one-by-one training run the same arithmetic in a different order (batched vs
single matmuls), so they agree up to float32 rounding carried through training:
validation losses within 2e-3 at every epoch, the same best epoch, probabilities within 1e-2 and
predictions identical on all but a handful of rows (measured: max prob gap ~1e-4 on these tasks).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from kdx.distill.objectives.base import Objective, TeacherSignals
from kdx.distill.objectives.dkd import DKD
from kdx.distill.objectives.hinton import Hinton
from kdx.distill.objectives.jacobian import Jacobian
from kdx.distill.stacked import fit_stacked, stackable
from kdx.errors import TrainingError
from kdx.models.losses import Loss
from kdx.models.mlp import MLPClassifier, build_mlp


def _task(n=1200, d=12, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    w = rng.normal(size=(d, classes))
    y = (X @ w + rng.gumbel(size=(n, classes))).argmax(1)
    teacher = (X @ w * 1.5).astype(np.float32)
    return X[:900], y[:900], X[900:], y[900:], teacher[:900]


def _student(**kw):
    return MLPClassifier(**{"hidden": [16, 8], "lr": 0.01, "epochs": 25, "batch_size": 64, "patience": 4,
                            "seed": 3, **kw})


def _kd(tau: float, alpha: float) -> Loss:
    """Hinton's loss as a student's Loss (kdx.models.losses)."""
    return Hinton(tau, alpha).student_loss(None)


def _one_by_one(loss: Loss, X, y, Xv, yv, T, **kw):
    model = _student(**kw)
    if loss.alpha == 1:
        return model.fit(X, y, Xv, yv, 3)
    return model.fit(X, y, Xv, yv, 3, objective=Hinton(loss.tau, loss.alpha),
                     signals=TeacherSignals({"teacher_logits": T}))


def test_stacked_students_match_one_by_one_training():
    X, y, Xv, yv, T = _task()
    losses = [Loss(), _kd(4.0, 0.5), _kd(1.0, 0.1), _kd(8.0, 0.9)]
    stacked = fit_stacked([_student() for _ in losses], losses, X, y, Xv, yv, 3, T)
    epochs = set()
    for loss, together in zip(losses, stacked):
        alone = _one_by_one(loss, X, y, Xv, yv, T)
        a, b = np.asarray(alone.history_["val_ce"]), np.asarray(together.history_["val_ce"])
        assert len(a) == len(b) and np.max(np.abs(a - b)) < 2e-3
        assert alone.history_["best_epoch"] == together.history_["best_epoch"]
        assert np.max(np.abs(alone.predict_proba(Xv) - together.predict_proba(Xv))) < 1e-2
        assert (alone.predict(Xv) != together.predict(Xv)).sum() <= 3
        assert together.history_["trained_together"] == len(losses)
        epochs.add(together.history_["epochs_run"])
    # Early stopping is per student: they stopped at different epochs, so the stack was compacted.
    assert len(epochs) > 1


@pytest.mark.parametrize("batch_size, block_rows", [(64, 128), (48, 100), (64, 10)])
def test_an_epoch_gathered_by_blocks_trains_the_same_bits_as_gathered_whole(monkeypatch, batch_size, block_rows):
    """The training buffer holds a block of the epoch's rows (a whole number of minibatches, at least one), not
    the whole epoch: the students come out bit for bit as from one buffer of every row."""
    import kdx.distill.stacked as stacked

    X, y, Xv, yv, T = _task()
    losses = [Loss(), _kd(4.0, 0.5)]
    whole = fit_stacked([_student(batch_size=batch_size, epochs=4) for _ in losses], losses, X, y, Xv, yv, 3, T)
    monkeypatch.setattr(stacked, "EPOCH_BLOCK_ROWS", block_rows)
    blocks = fit_stacked([_student(batch_size=batch_size, epochs=4) for _ in losses], losses, X, y, Xv, yv, 3, T)
    for a, b in zip(whole, blocks):
        assert a.history_["val_ce"] == b.history_["val_ce"]
        np.testing.assert_array_equal(a.logits(Xv), b.logits(Xv))


def test_every_objective_matches_its_one_by_one_training_in_one_stack():
    """Every kdx objective in one stack with the no-KD student — label_smoothing (ε given and resolved),
    dkd (with and without its warm-up ramp), hinton, jacobian and attribution (input gradients through the
    stack) — each held to the tolerance above against the objective's own loss trained alone, with the
    signals the protocol gives it (an MLP teacher; encoded columns grouped into features)."""
    from kdx.data.rows import SeedData
    from kdx.distill.objectives.attribution import Attribution
    from kdx.distill.objectives.dkd import DKD
    from kdx.distill.objectives.hinton import Hinton
    from kdx.distill.objectives.jacobian import Jacobian
    from kdx.distill.objectives.label_smoothing import LabelSmoothing
    from kdx.run.protocol import train_together

    X, y, Xv, yv, _ = _task()
    teacher = MLPClassifier(hidden=[32, 16], lr=0.01, epochs=8, batch_size=64, patience=3, seed=0).fit(X, y, Xv, yv, 3)
    columns = np.array([0, 0, 1, 2, 2, 2, 3, 4, 5, 6, 7, 7])  # encoded column -> feature
    objectives = [None, LabelSmoothing(epsilon=0.2), LabelSmoothing(tau=2.0), DKD(4.0, 0.5, 1.0, 8.0, warmup=5),
                  DKD(2.0, 0.2, 0.5, 2.0, warmup=0), Hinton(3.0, 0.5), Jacobian(3.0, 0.5, lam=1.0),
                  Attribution(2.0, 0.3, lam=0.5), Attribution(2.0, 1.0, lam=2.0)]
    asked = []

    def signals(objective):
        asked.append(objective)
        return objective.signals(teacher, X, y, 3, columns, "centred")

    sd = SeedData(None, None, {"train": X, "val": Xv}, {"train": y, "val": yv})
    names = [f"s{i}" for i in range(len(objectives))]
    node = OmegaConf.create({"_target_": "kdx.models.mlp.MLPClassifier", "hidden": [16, 8], "lr": 0.01, "epochs": 25,
                             "batch_size": 64, "patience": 4})
    stacked = train_together(node, 3, "cpu", OmegaConf.create({"epochs": None}), sd, 3, objectives, signals, names)
    # Teacher signals once per distinct computation: logits (hinton, dkd), each ε-resolving label smoothing,
    # and each gradient objective's teacher pass.
    assert len(asked) == 5
    assert 0 < stacked[2].history_["resolved"]["epsilon"] < 1
    for i, objective in enumerate(objectives):
        if objective is None:
            alone = _student().fit(X, y, Xv, yv, 3)
        else:
            alone = _student().fit(X, y, Xv, yv, 3, objective=objective, signals=signals(objective))
        together = stacked[i]
        a, b = np.asarray(alone.history_["val_ce"]), np.asarray(together.history_["val_ce"])
        assert len(a) == len(b) and np.max(np.abs(a - b)) < 2e-3, objective
        assert alone.history_["best_epoch"] == together.history_["best_epoch"], objective
        assert np.max(np.abs(alone.predict_proba(Xv) - together.predict_proba(Xv))) < 1e-2, objective
        assert (alone.predict(Xv) != together.predict(Xv)).sum() <= 3, objective
        assert together.history_["trained_together"] == len(objectives)
    # The losses differ (the comparison is not vacuous): no two students ended with the same weights.
    firsts = [next(stacked[i].net_.parameters()).detach() for i in range(len(objectives))]
    assert all(not torch.equal(firsts[i], firsts[j]) for i in range(len(firsts)) for j in range(i))


@pytest.mark.parametrize("classes", [2, 3])
def test_stacked_cross_entropy_kl_gradient_is_autograds(classes):
    """The stack's CE + Hinton term with its gradient written out equals, student by student, the loss
    kdx.models.losses.kd_loss computes for one (torch's cross-entropy and KL) and autograd's gradient of it, in float64;
    also the no-KD student (w = 0) and label smoothing's CE weight α·(1 − ε)."""
    from kdx.distill.stacked import _CrossEntropyKL
    from kdx.models.losses import kd_loss

    torch.manual_seed(0)
    rows, tau = 9, torch.tensor([1.0, 4.0, 2.5, 1.0], dtype=torch.float64)
    alpha = torch.tensor([1.0, 0.3, 0.8, 1.0], dtype=torch.float64)
    ce_weight = alpha * torch.tensor([1.0, 1.0, 1.0, 0.8], dtype=torch.float64)  # the last: ε = 0.2
    kl_weight = torch.tensor([0.0, 1.0, 1.0, 0.0], dtype=torch.float64) * (1 - alpha) * tau**2
    logits = (3 * torch.randn(4, classes, rows, dtype=torch.float64)).requires_grad_()
    teacher, y = 3 * torch.randn(rows, classes, dtype=torch.float64), torch.randint(0, classes, (rows,))
    ours = _CrossEntropyKL.apply(logits, y, teacher, ce_weight, tau, kl_weight)
    weights = torch.randn(4, dtype=torch.float64)  # an upstream gradient that is not all ones
    (grad,) = torch.autograd.grad((ours * weights).sum(), logits)
    for k in range(4):
        z = logits[k].detach().T.clone().requires_grad_()
        if kl_weight[k]:
            theirs = kd_loss(z, teacher, y, float(tau[k]), float(alpha[k]))
        else:
            theirs = ce_weight[k] * torch.nn.functional.cross_entropy(z, y)
        (expected,) = torch.autograd.grad(theirs * weights[k], z)
        torch.testing.assert_close(ours[k], theirs.detach(), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(grad[k].T, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("hidden", [[], [16], [16, 8], [12, 8, 6]])
@pytest.mark.parametrize("classes", [2, 3])
def test_a_plain_step_computes_autograds_gradients_bit_for_bit(hidden, classes):
    """The step of CE and Hinton students with the backward pass written out (_plain_step) leaves in every
    stacked parameter's .grad exactly what autograd's backward of the same losses leaves; also with
    non-finite teacher logits, which only the KD students' gradients see."""
    from kdx.distill.stacked import _plain_step, _Terms
    from kdx.models.stack import augment as _augment
    from kdx.models.stack import forward as _forward
    from kdx.models.stack import layout as _layout

    torch.manual_seed(0)
    linears = [m for m in build_mlp(7, hidden, classes) if isinstance(m, torch.nn.Linear)]
    losses = [Loss(), _kd(2.0, 0.3), _kd(4.0, 0.7)]
    x, y = _augment(torch.randn(33, 7)), torch.randint(0, classes, (33,))
    diverged = torch.randn(33, classes).index_fill(0, torch.tensor([5]), float("inf"))
    for teacher, masked in ((torch.randn(33, classes), False), (diverged, True)):
        params = [(p + 0.1 * torch.randn(len(losses), *p.shape)).requires_grad_() for p in _layout(linears)]
        terms = _Terms(losses, "cpu", masked=masked)
        assert terms.plain
        terms(_forward(params, x), y, teacher, 1).sum().backward()
        expected = [p.grad for p in params]
        for p in params:
            p.grad = None
        _plain_step(params, x, y, teacher, terms)
        for p, g in zip(params, expected):  # bit for bit (the KD students' NaN where autograd's are)
            torch.testing.assert_close(p.grad, g, rtol=0, atol=0, equal_nan=True)
        assert all(bool(torch.isfinite(p.grad[0]).all()) for p in params)  # the no-KD student never sees it
    assert not _Terms([Loss(), Loss(epsilon=0.1)], "cpu").plain  # label smoothing: autograd


def test_stacked_input_gradients_are_autograds():
    """The stack's input gradients (the chain rule written out) equal autograd's, student by student, for
    MLPs of 0, 1 and 2 hidden layers."""
    from kdx.distill.stacked import _input_gradients
    from kdx.models.stack import augment as _augment
    from kdx.models.stack import forward as _forward

    torch.manual_seed(0)
    for hidden in ([], [6], [6, 5]):
        sizes = [4 + 1, *hidden, 3]
        params = []  # in the stack's layout (kdx.models.stack.layout): the output layer class-major
        for j, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            last = j and j == len(sizes) - 2
            params.append(torch.randn(3, b, a) if last else torch.randn(3, a, b))
            if j:
                params.append(torch.randn(3, b, 1) if last else torch.randn(3, 1, b))
        x = _augment(torch.randn(7, 4))
        w = torch.randn(7, 3)
        acts = []
        _forward(params, x, acts)
        ours = _input_gradients(params, acts, torch.tensor([0, 2]), w)
        for row, k in enumerate((0, 2)):
            leaf = x.clone().requires_grad_()
            z = _forward([p[k:k + 1] for p in params], leaf)[0].T
            (theirs,) = torch.autograd.grad((z * w).sum(), leaf)
            torch.testing.assert_close(ours[row], theirs[:, :-1])


class Margin(Objective):
    """A toy objective, defined here and nowhere in kdx: Hinton's loss plus γ·mean over rows of (m_S − m_T)², m
    the gap between a model's two largest logits — a term with a setting of its own (γ) and a per-row teacher
    signal of its own (m_T)."""

    name = "margin"

    def __init__(self, tau: float = 4.0, alpha: float = 0.5, gamma: float = 0.5):
        super().__init__(tau, alpha)
        self.gamma = gamma

    def settings(self):
        return {**super().settings(), "gamma": self.gamma}

    def signals(self, teacher, X, y, n_classes, column_feature, output):
        z = teacher.logits(X).astype(np.float32)
        top = np.sort(z, axis=1)
        return TeacherSignals({"teacher_logits": z, "teacher_margin": top[:, -1] - top[:, -2]})

    def term_settings(self, signals):
        return {"gamma": self.gamma}

    @staticmethod
    def term(settings, step):
        top = step.logits.topk(2, dim=1).values  # (students, 2, rows)
        return settings["gamma"] * ((top[:, 0] - top[:, 1] - step.rows["teacher_margin"]) ** 2).mean(1)


class _Teacher:
    def __init__(self, logits):
        self.values = logits

    def logits(self, X):
        return self.values


def test_a_new_objective_defined_outside_kdx_trains_stacked_as_one_by_one():
    """A new objective is one class (and one YAML): its term, written once, trains it one by one and in a
    stack with other objectives' students, to the tolerance above — no other file of kdx knows it."""
    from kdx.data.rows import SeedData
    from kdx.run.protocol import train_together

    X, y, Xv, yv, T = _task()
    objectives = [None, Margin(3.0, 0.5, gamma=0.5), Hinton(3.0, 0.5), Margin(2.0, 0.3, gamma=2.0)]

    def signals(objective):
        return objective.signals(_Teacher(T), X, y, 3, None, "centred")

    sd = SeedData(None, None, {"train": X, "val": Xv}, {"train": y, "val": yv})
    node = OmegaConf.create({"_target_": "kdx.models.mlp.MLPClassifier", "hidden": [16, 8], "lr": 0.01, "epochs": 25,
                             "batch_size": 64, "patience": 4})
    stacked = train_together(node, 3, "cpu", OmegaConf.create({"epochs": None}), sd, 3, objectives, signals,
                             ["a", "b", "c", "d"])
    assert len(stacked) == 4 and stacked[1].history_["trained_together"] == 4
    for i, objective in enumerate(objectives[1:], 1):
        alone = _student().fit(X, y, Xv, yv, 3, objective=objective, signals=signals(objective))
        a, b = np.asarray(alone.history_["val_ce"]), np.asarray(stacked[i].history_["val_ce"])
        assert len(a) == len(b) and np.max(np.abs(a - b)) < 2e-3, objective
        assert alone.history_["best_epoch"] == stacked[i].history_["best_epoch"]
        assert np.max(np.abs(alone.predict_proba(Xv) - stacked[i].predict_proba(Xv))) < 1e-2
    # The term counts: the margin student is not Hinton's with the same τ and α.
    gap = np.abs(stacked[1].predict_proba(Xv) - stacked[2].predict_proba(Xv)).max()
    assert gap > 1e-2
    # ... and its loss is what it says, one by one: Hinton's loss plus γ·mean (m_S − m_T)².
    from kdx.models.losses import OneStudentLoss, kd_loss

    z, zt = torch.randn(10, 3, dtype=torch.float64), torch.randn(10, 3, dtype=torch.float64)
    yy = torch.randint(0, 3, (10,))
    form = Margin(2.0, 0.3, gamma=2.0).student_loss(None)
    margin_t = zt.topk(2, 1).values
    got = OneStudentLoss(form, "cpu")(lambda x: x, z, yy, {"teacher_logits": zt,
                                                           "teacher_margin": margin_t[:, 0] - margin_t[:, 1]}, {}, 1)
    top = z.topk(2, 1).values
    gap = top[:, 0] - top[:, 1] - (margin_t[:, 0] - margin_t[:, 1])
    expected = kd_loss(z, zt, yy, 2.0, 0.3) + 2.0 * (gap**2).mean()
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


def test_a_new_objective_runs_end_to_end_from_its_own_yaml(tmp_path, compose_cfg):
    """Registered as a user would: one YAML in a config directory of their own (Hydra's search path) naming the
    class; `kd=margin` then runs the protocol, its students trained together and alone alike."""
    from kdx.run.protocol import run

    (tmp_path / "conf" / "kd").mkdir(parents=True)
    (tmp_path / "conf" / "kd" / "margin.yaml").write_text(
        f"_target_: {Margin.__module__}.Margin\nname: margin\ntau: 2.0\nalpha: 0.5\ngamma: 1.0\n"
        "soft_labels: insample\noof_folds: 5\n")
    args = (*SMALL, "seeds=[0]", f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "kd=margin")
    together = run(compose_cfg(*args), tmp_path / "a")
    alone = run(compose_cfg(*args, "train_together=false", "cache.enabled=false"), tmp_path / "b")
    a, b = together.metrics.set_index("model"), alone.metrics.set_index("model")
    assert a.trained_together["student_kd"] == 2 and b.trained_together["student_kd"] == 1
    assert a.epochs_run["student_kd"] == b.epochs_run["student_kd"]
    for column in ("accuracy", "nll"):
        assert abs(a[column]["student_kd"] - b[column]["student_kd"]) <= 0.01, column
    assert together.summary["kd"]["method"] == "margin" and together.summary["kd"]["settings"]["gamma"] == 1.0
    assert a.kd_method["student_kd"] == "margin" and a.kd_gamma["student_kd"] == 1.0


def test_gradient_students_need_the_teachers_gradients():
    X, y, Xv, yv, T = _task()
    with pytest.raises(ValueError, match="input gradients"):
        fit_stacked([_student(), _student()], [Loss(), Jacobian(2.0, 0.5, lam=1.0).student_loss(None)],
                    X, y, Xv, yv, 3, T)


def test_a_stacked_student_is_an_ordinary_model(tmp_path):
    X, y, Xv, yv, T = _task()
    a, b = fit_stacked([_student(), _student()], [Loss(), _kd(2.0, 0.5)], X, y, Xv, yv, 3, T)
    loaded = MLPClassifier.load(b.save(tmp_path / "model"))
    np.testing.assert_array_equal(loaded.logits(Xv), b.logits(Xv))
    assert b.n_params() == a.n_params() == _one_by_one(Loss(), X, y, Xv, yv, T).n_params()
    assert a.history_["fit_seconds"] > 0


def test_what_cannot_stack_is_refused():
    assert not stackable([_student()])
    assert not stackable([_student(), _student(seed=4)])
    assert not stackable([_student(dropout=0.1), _student(dropout=0.1)])
    assert stackable([_student(), _student()])
    X, y, Xv, yv, T = _task()
    with pytest.raises(ValueError, match="teacher_logits"):
        fit_stacked([_student(), _student()], [Loss(), _kd(2.0, 0.5)], X, y, Xv, yv, 3)


@pytest.mark.parametrize("loss, said", [(_kd(2.0, 0.5), "τ=2, α=0.5"),
                                        (DKD(2.0, 0.5, 1.0, 8.0, 5).student_loss(None), "DKD τ=2, α=0.5")])
def test_a_diverging_student_is_named(loss, said):
    X, y, Xv, yv, T = _task()
    bad = T.copy()
    bad[0, 0] = np.inf
    with pytest.raises(TrainingError, match=rf"student 1 \({said}, trained in a stacked pass\).*non-finite teacher"):
        fit_stacked([_student(), _student()], [Loss(), loss], X, y, Xv, yv, 3, bad)


def test_stacked_training_is_deterministic():
    X, y, Xv, yv, T = _task()
    runs = [fit_stacked([_student(), _student()], [Loss(), _kd(3.0, 0.3)], X, y, Xv, yv, 3, T)
            for _ in range(2)]
    for a, b in zip(*runs):
        for p, q in zip(a.net_.parameters(), b.net_.parameters()):
            assert torch.equal(p, q)


# ---- in the protocol and in sweeps -----------------------------------------------------------------------
SMALL = ("experiment=breast_cancer", "+smoke=on")


def test_a_run_trains_its_two_students_together_with_the_same_results(tmp_path, compose_cfg):
    from kdx.run.protocol import run

    together = run(compose_cfg(*SMALL), tmp_path / "a").metrics.set_index(["seed", "model"])
    alone = run(compose_cfg(*SMALL, "train_together=false", "cache.enabled=false"),
                tmp_path / "b").metrics.set_index(["seed", "model"])
    students = together.index.get_level_values("model") != "teacher"
    assert (together.trained_together[students] == 2).all() and (alone.trained_together == 1).all()
    for column, tolerance in (("accuracy", 0.02), ("nll", 0.01), ("val_nll", 0.01)):
        gap = (together[column] - alone[column]).abs()
        assert gap.max() <= tolerance, (column, gap.max())
    assert together.epochs_run.fillna(-1).equals(alone.epochs_run.fillna(-1))


@pytest.mark.parametrize("objective", [("kd=label_smoothing",), ("kd=jacobian", "teacher=mlp4")])
def test_a_run_trains_other_objectives_students_together_with_the_same_results(tmp_path, compose_cfg, objective):
    from kdx.run.protocol import run

    args = (*SMALL, "seeds=[0]", *objective)
    together = run(compose_cfg(*args), tmp_path / "a").metrics.set_index("model")
    alone = run(compose_cfg(*args, "train_together=false", "cache.enabled=false"), tmp_path / "b")
    alone = alone.metrics.set_index("model")
    assert together.trained_together["student_kd"] == 2 and alone.trained_together["student_kd"] == 1
    assert together.epochs_run["student_kd"] == alone.epochs_run["student_kd"]
    for column in ("accuracy", "nll"):
        assert abs(together[column]["student_kd"] - alone[column]["student_kd"]) <= 0.01, column
    if objective[0] == "kd=label_smoothing":  # ε resolved from the same teacher logits
        for column in ("kd_epsilon", "kd_teacher_entropy"):
            assert together[column]["student_kd"] == alone[column]["student_kd"] and 0 < alone[column]["student_kd"]


def test_tree_students_and_dropout_train_one_by_one(tmp_path, compose_cfg):
    from kdx.run.protocol import run

    for extra in (("student=tree",), ("experiment=wine_quality", "student.dropout=0.1")):
        m = run(compose_cfg(*SMALL, "seeds=[0]", *extra), tmp_path / extra[0]).metrics
        assert (m.trained_together == 1).all(), extra


def test_grouping_ignores_only_kd(compose_cfg):
    from kdx.run.grouping import group_key

    assert group_key(compose_cfg(*SMALL, "kd.tau=2")) == group_key(compose_cfg(*SMALL, "kd.alpha=0.9"))
    assert group_key(compose_cfg(*SMALL)) != group_key(compose_cfg(*SMALL, "student.hidden=[8]"))


def test_the_grouped_pass_says_a_jobs_notes_once(compose_cfg, monkeypatch, caplog):
    """Each job logs its own settings notes (e.g. no onnxruntime); the pass before them says each once."""
    import logging

    from kdx import deploy
    from kdx.run.grouping import prefit_sweep

    monkeypatch.setattr(deploy, "available", lambda: False)  # as without kdx[deploy]
    monkeypatch.setattr(deploy, "missing_packages", lambda: ["onnxruntime"])
    configs = [compose_cfg(*SMALL, "seeds=[0]", f"kd.tau={tau}") for tau in (1, 2, 4)]
    with caplog.at_level(logging.INFO, logger="kdx"):
        (record,) = prefit_sweep(configs)
        assert logging.getLogger("kdx").level == logging.INFO  # left as it was
    assert record["students_per_pass"] == [4]
    assert sum("profile.onnx=auto" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.slow
def test_a_sweep_trains_every_student_of_a_seed_in_one_pass(tmp_path):
    import json
    import subprocess
    import sys

    import pandas as pd

    res = subprocess.run([sys.executable, "-m", "kdx", "run", "-m", *SMALL, "kd.tau=1,4", "kd.alpha=0.3,0.7",
                          "student.hidden=[16],[8]", f"hydra.sweep.dir={tmp_path}"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    groups = json.loads((tmp_path / "trained_together.json").read_text())
    # Two groups (one per student architecture) of 4 jobs: 4 KD students + the no-KD student per seed.
    assert [(g["jobs"], g["students_per_pass"]) for g in groups] == [(4, [5, 5]), (4, [5, 5])]
    for job in range(8):
        m = pd.read_csv(tmp_path / str(job) / "metrics.csv")
        assert (m[m.model != "teacher"].trained_together == 5).all()
        summary = json.loads((tmp_path / str(job) / "summary.json").read_text())
        assert not [c for c in summary["cache"]["computed"] if "measurements" not in c]  # models all trained before
    report = (tmp_path / "report.md").read_text()
    assert "8 complete run(s) of 8" in report and "5 students per stacked pass" in report


@pytest.mark.slow
def test_a_methods_sweep_trains_every_objectives_student_in_one_pass(tmp_path):
    """+sweep=methods on a multiclass pair with an MLP teacher (every objective applies): the five objectives'
    KD students and the no-KD student in one pass per seed; on breast cancer (binary, tree teacher) dkd,
    jacobian and attribution do not apply and only hinton and label_smoothing share the pass."""
    import json
    import subprocess
    import sys

    import pandas as pd
    import yaml

    for experiment, stacked, size in (("wine_quality", 5, 6), ("breast_cancer", 2, 3)):
        out = tmp_path / experiment
        res = subprocess.run([sys.executable, "-m", "kdx", "run", "+sweep=methods", f"experiment={experiment}",
                              "+smoke=on", "seeds=[0]", f"hydra.sweep.dir={out}"], capture_output=True, text=True,
                             timeout=600)
        assert res.returncode == 0, res.stderr
        (group,) = json.loads((out / "trained_together.json").read_text())
        assert (group["jobs"], group["students_per_pass"], group["jobs_stacked"]) == (5, [size], stacked)
        ran = 0
        for job in range(5):
            if (out / str(job) / "not_applicable.txt").exists():
                continue
            ran += 1
            kd = yaml.safe_load((out / str(job) / "config.yaml").read_text())["kd"]["name"]
            m = pd.read_csv(out / str(job) / "metrics.csv").set_index("model")
            assert m.trained_together["student_kd"] == m.trained_together["student_nokd"] == size, kd
            computed = json.loads((out / str(job) / "summary.json").read_text())["cache"]["computed"]
            assert "student_kd seed 0" not in computed, kd  # trained before the job ran
            if kd == "label_smoothing":
                assert 0 < m.kd_epsilon["student_kd"] < 1
        assert ran == stacked


@pytest.mark.parametrize("weight_decay", [0.0, 1e-3])
def test_kdx_adam_is_torch_adam_bit_for_bit(weight_decay):
    """kdx's Adam avoids torch.optim's first-step import of torch._dynamo (~1.2 s); its updates must be
    torch's own: the same weights to the last bit after 50 steps."""
    from kdx.models.adam import Adam

    torch.manual_seed(0)
    # sizes with vectorized bodies and scalar tails; three parameters (ours updates all in one call per op)
    ours = [torch.randn(37, 29, requires_grad=True), torch.randn(29, requires_grad=True),
            torch.randn(29, 3, requires_grad=True)]
    theirs = [p.detach().clone().requires_grad_() for p in ours]
    opts = (Adam(ours, lr=0.01, weight_decay=weight_decay),
            torch.optim.Adam(theirs, lr=0.01, weight_decay=weight_decay, fused=True))
    x = torch.randn(7, 37)
    for _ in range(50):
        for params, opt in zip((ours, theirs), opts):
            opt.zero_grad()
            (torch.tanh(x @ params[0] + params[1]) @ params[2]).square().sum().backward()
            opt.step()
    assert all(torch.equal(p, q) for p, q in zip(ours, theirs))


def test_compacting_the_stack_keeps_each_students_optimizer_state():
    """A stack that lost a student continues exactly as the remaining students would have."""
    from kdx.models.adam import Adam

    torch.manual_seed(0)
    full = [torch.randn(3, 4, 2, requires_grad=True)]
    kept = [full[0].detach()[[0, 2]].clone().requires_grad_()]
    opt_full, opt_kept = Adam(full, lr=0.1), None
    x = torch.randn(4)
    for step in range(10):
        if step == 5:  # student 1 stops; students 0 and 2 continue in a smaller stack
            kept = [full[0].detach()[[0, 2]].clone().requires_grad_()]
            opt_kept = opt_full.keep(kept, torch.tensor([0, 2]))
        for params, opt in ((full, opt_full), (kept, opt_kept)):
            if opt is None:
                continue
            opt.zero_grad()
            (torch.einsum("i,kij->kj", x, params[0]) ** 2).sum().backward()
            opt.step()
    assert torch.allclose(kept[0], full[0].detach()[[0, 2]], atol=1e-6)
