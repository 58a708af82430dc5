"""MLPs trained together on different rows of one table (kdx.models.stack.train_on_rows): the out-of-fold
teachers of a seed in one stacked pass, and a teacher alone (MLPClassifier.fit_teacher, a stack of one).

Tolerance: a model trained in a stack runs the same arithmetic as trained alone, with its own initialization,
minibatch order, dropout masks, Adam step count and early stopping; the batched matmuls of a stack of K and of
one model may round differently, and a model whose last minibatch is shorter than the others' is padded with
rows of weight 0 (summed in another order). So: validation losses within 1e-5 at every epoch, the same epochs
run and best epoch, probabilities within 1e-4 (measured: ≤ 3e-7 on these tasks).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.model_selection import KFold

from kdx.distill.labels import out_of_fold_logits
from kdx.errors import TrainingError
from kdx.models.adam import Adam, RowAdam
from kdx.models.gbt import GBTClassifier
from kdx.models.mlp import MLPClassifier


def _task(n=1000, d=12, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    w = rng.normal(size=(d, classes))
    y = (X @ w + rng.gumbel(size=(n, classes))).argmax(1)
    target = (X @ w[:, 0] + 0.3 * rng.normal(size=n)).astype(np.float32)  # a regression's standardized target
    return X[:800], y[:800], target[:800], X[800:], y[800:], target[800:]


def _model(**kw):
    return MLPClassifier(**{"hidden": [32, 16], "dropout": 0.2, "lr": 0.01, "epochs": 20, "batch_size": 64,
                            "patience": 4, "seed": 3, **kw})


def _row_sets(n: int) -> list[np.ndarray]:
    """Five folds' training rows, of three sizes: 640 (ten full minibatches of 64), 633 (a last minibatch of
    57) and 700 (eleven minibatches: that model has a step the others do not)."""
    sets = [fit for fit, _ in KFold(5, shuffle=True, random_state=0).split(np.zeros(n))]
    sets[0] = sets[0][:-7]
    sets[4] = np.concatenate([sets[4], sets[3][:60]])
    return sets


def _agree(alone: MLPClassifier, together: MLPClassifier, X_val: np.ndarray, regression: bool) -> None:
    a, b = np.asarray(alone.history_["val_ce"]), np.asarray(together.history_["val_ce"])
    assert len(a) == len(b) and np.max(np.abs(a - b)) < 1e-5
    assert alone.history_["best_epoch"] == together.history_["best_epoch"]
    if regression:
        assert np.max(np.abs(alone.logits(X_val) - together.logits(X_val))) < 1e-4
    else:
        assert np.max(np.abs(alone.predict_proba(X_val) - together.predict_proba(X_val))) < 1e-4


@pytest.mark.parametrize("regression", [False, True])
def test_models_trained_together_on_their_own_rows_match_one_by_one_training(regression):
    X, y, target, Xv, yv, tv = _task()
    labels, val, classes = (target, tv, 1) if regression else (y, yv, 3)
    sets = _row_sets(len(X))
    together = MLPClassifier.fit_on_rows([_model() for _ in sets], X, labels, sets, Xv, val, classes)
    for rows, model in zip(sets, together):
        # a teacher alone (the stacked trainer, one model) and the one-by-one trainer students use (autograd)
        _agree(_model().fit_teacher(X[rows], labels[rows], Xv, val, classes), model, Xv, regression)
        _agree(_model().fit(X[rows], labels[rows], Xv, val, classes), model, Xv, regression)
        assert model.history_["trained_together"] == len(sets)
    # early stopping is per model: they stopped at different epochs, so the stack was compacted on the way
    assert len({m.history_["epochs_run"] for m in together}) > 1


def test_a_fold_model_does_not_depend_on_its_companions():
    X, y, _, Xv, yv, _ = _task()
    sets = _row_sets(len(X))
    with_four = MLPClassifier.fit_on_rows([_model() for _ in sets], X, y, sets, Xv, yv, 3)[1]
    with_one = MLPClassifier.fit_on_rows([_model(), _model()], X, y, [sets[1], sets[2]], Xv, yv, 3)[0]
    _agree(with_one, with_four, Xv, regression=False)


def test_out_of_fold_mlp_teachers_train_in_one_pass_and_boosters_one_by_one(caplog):
    X, y, _, Xv, yv, _ = _task()
    with caplog.at_level("INFO", logger="kdx"):
        oof = out_of_fold_logits(lambda k: _model(), X, y, Xv, yv, 3, 5, seed=0)
    assert "5 folds trained together in one stacked pass" in caplog.text
    assert oof.logits.shape == (len(X), 3) and (oof.fold >= 0).all() and oof.fit_seconds > 0
    # each fold's logits are those of that fold's model trained alone on the other folds
    for k in range(5):
        held = oof.fold == k
        alone = _model().fit_teacher(X[~held], y[~held], Xv, yv, 3)
        assert np.max(np.abs(alone.logits(X[held]) - oof.logits[held])) < 1e-3
    caplog.clear()
    with caplog.at_level("INFO", logger="kdx"):
        boosted = out_of_fold_logits(lambda k: GBTClassifier(n_estimators=10, seed=0), X, y, Xv, yv, 3, 3, seed=0)
    assert "stacked pass" not in caplog.text
    assert boosted.logits.shape == (len(X), 3) and (boosted.fold >= 0).all()


def test_what_cannot_train_together_is_refused():
    assert not MLPClassifier.trains_together([_model()])
    assert not MLPClassifier.trains_together([_model(), _model(seed=4)])
    assert not MLPClassifier.trains_together([_model(), GBTClassifier()])
    X, y, _, Xv, yv, _ = _task()
    with pytest.raises(ValueError, match="identical settings"):
        MLPClassifier.fit_on_rows([_model(), _model(lr=0.1)], X, y, [np.arange(10)] * 2, Xv, yv, 3)


def test_a_diverging_model_of_a_stack_is_named():
    X, y, _, Xv, yv, _ = _task()
    X = X.copy()
    X[5] = 1e38  # a row whose activations overflow
    with pytest.raises(TrainingError, match=r"fold 0 teacher \(trained in a stacked pass\): training diverged "
                                            r"at epoch \d+: .*extreme input values"):
        MLPClassifier.fit_on_rows([_model(), _model()], X, y, [np.arange(800), np.arange(400)], Xv, yv, 3,
                                  names=["fold 0 teacher", "fold 1 teacher"])


def test_a_model_that_skips_a_step_keeps_its_own_adam_state():
    """RowAdam: stack row 1 sits out steps 3 and 4; each row ends as its own Adam (kdx.models.adam.Adam) alone."""
    torch.manual_seed(0)
    stack = [torch.randn(2, 5, 3, requires_grad=True), torch.randn(2, 1, 3, requires_grad=True)]
    alone = [[p.detach()[r].clone().requires_grad_() for p in stack] for r in range(2)]
    opt = RowAdam(stack, lr=0.05, weight_decay=0.01)
    opts = [Adam(params, lr=0.05, weight_decay=0.01) for params in alone]
    x = torch.randn(7, 5)
    for step in range(8):
        rows = [0] if step in (3, 4) else [0, 1]
        opt.zero_grad()
        torch.tanh(x @ stack[0] + stack[1])[rows].square().sum().backward()
        opt.step(rows)
        for r in rows:
            opts[r].zero_grad()
            torch.tanh(x @ alone[r][0] + alone[r][1]).square().sum().backward()
            opts[r].step()
    for r in range(2):
        for p, q in zip(stack, alone[r]):
            torch.testing.assert_close(p.detach()[r], q.detach(), rtol=1e-6, atol=1e-7)
    assert opt.row_steps == [8, 6]


def test_a_teacher_without_hidden_layers_trains_alone_and_together():
    """hidden=[] (multinomial logistic regression): no dropout layer, so no mask is drawn."""
    X, y, _, Xv, yv, _ = _task()
    alone = _model(hidden=[], dropout=0.3).fit_teacher(X, y, Xv, yv, 3)
    _agree(_model(hidden=[], dropout=0.3).fit(X, y, Xv, yv, 3), alone, Xv, regression=False)
    sets = _row_sets(len(X))
    together = MLPClassifier.fit_on_rows([_model(hidden=[]) for _ in sets], X, y, sets, Xv, yv, 3)
    _agree(_model(hidden=[]).fit_teacher(X[sets[0]], y[sets[0]], Xv, yv, 3), together[0], Xv, regression=False)
