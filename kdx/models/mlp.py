"""Multi-layer perceptrons (hidden=[] is multinomial logistic regression), trained one by one with a student's loss."""

from __future__ import annotations

import copy
import io
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from kdx import progress
from kdx.config.schema import device as check_device
from kdx.errors import ConfigError, TrainingError
from kdx.models.adam import Adam
from kdx.models.base import Classifier, require_float, require_int
from kdx.models.losses import Loss, OneStudentLoss
from kdx.models.nets import (
    INFERENCE_ROWS,
    Dropout,
    build_mlp,
    divergence,
    dropout_mask,
    forward,
    mask_stream,
    resolve_device,
)
from kdx.models.stack import train_on_rows

__all__ = ["INFERENCE_ROWS", "Dropout", "MLPClassifier", "build_mlp", "dropout_mask", "forward", "resolve_device"]


class MLPClassifier(Classifier):
    """An MLP trained by minibatch Adam from whole tensors with index slicing.

    With one output (n_classes = 1) it is a regressor of the standardized target, trained on squared errors
    (kdx.models.losses.regression_kd_loss). Checkpoint selection: the epoch with the lowest validation
    cross-entropy (regression: squared error); training stops after
    `patience` epochs without improvement. The same `seed` gives the same initialization, the same
    minibatch order and the same dropout masks (kdx.models.nets.Dropout), so a KD student and its no-KD
    baseline differ only in their loss. Adam is the fused kernel (kdx.models.adam). A teacher
    (`fit_teacher`) trains on the CPU by the stacked trainer (kdx.models.stack), with one model, as a
    seed's out-of-fold teachers train together (`fit_on_rows`).
    """

    family = "torch"

    def __init__(
        self, hidden: Sequence[int] = (64, 32), dropout: float = 0.0, lr: float = 1e-3,
        weight_decay: float = 0.0, epochs: int = 50, batch_size: int = 256, patience: int = 8,
        device: str = "cpu", seed: int = 0,
    ):
        if isinstance(hidden, (int, np.integer)) and not isinstance(hidden, bool):
            hidden = (hidden,)  # teacher.hidden=64: one hidden layer
        self.hidden = tuple(require_int("hidden size", h) for h in (hidden or ()))
        self.dropout = require_float("dropout", dropout, 0.0, 0.95)
        self.lr = require_float("lr", lr, 0.0, low_open=True)
        self.weight_decay = require_float("weight_decay", weight_decay, 0.0)
        self.epochs = require_int("epochs", epochs)
        self.batch_size = require_int("batch_size", batch_size)
        self.patience = require_int("patience", patience)
        check_device("device", device, indexed=True)
        self.device = device
        self.seed = require_int("seed", seed, minimum=0)
        self.net_: nn.Sequential | None = None

    def get_params(self) -> dict:
        return {
            "hidden": list(self.hidden), "dropout": self.dropout, "lr": self.lr,
            "weight_decay": self.weight_decay, "epochs": self.epochs, "batch_size": self.batch_size,
            "patience": self.patience, "device": self.device, "seed": self.seed,
        }

    def fit(self, X, y, X_val, y_val, n_classes, objective=None, signals=None):
        """Hard labels (no `objective`), or a distillation `objective` (kdx.distill.objectives) with its per-seed
        teacher `signals`: the student's loss (kdx.models.losses.Loss) it gives."""
        device = resolve_device(self.device)
        torch.manual_seed(self.seed)
        net = build_mlp(X.shape[1], self.hidden, n_classes, self.dropout).to(device)
        masks = mask_stream(self.seed)
        for module in net:
            if isinstance(module, Dropout):
                module.generator = masks
        Xt = torch.as_tensor(X, dtype=torch.float32, device=device)
        regression = n_classes == 1  # one output: the standardized target (kdx.data.preprocess.fit_target)
        target_type = torch.float32 if regression else torch.long
        yt = torch.as_tensor(y, dtype=target_type, device=device)
        Xv = torch.as_tensor(X_val, dtype=torch.float32, device=device)
        yv = torch.as_tensor(y_val, dtype=target_type, device=device)
        validation_loss = (lambda z: nn.functional.mse_loss(z[:, 0], yv)) if regression else (
            lambda z: nn.functional.cross_entropy(z, yv))
        spec = Loss(regression=regression) if objective is None else objective.student_loss(signals)
        if spec.regression != regression:
            raise ConfigError(f"a {'regression' if regression else 'classification'} student got the other task's "
                              "loss: build its objective with build_objective(node, regression=...)")
        step_loss = OneStudentLoss(spec, device)
        rows = {} if signals is None else {k: torch.as_tensor(v, device=device) for k, v in signals.rows.items()}
        constants = {} if signals is None else {k: torch.as_tensor(v, device=device)
                                                for k, v in signals.constants.items()}
        teacher_logits = None if signals is None else signals.rows.get("teacher_logits")
        order = torch.Generator().manual_seed(self.seed)
        opt = Adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        best_loss, best_state, best_epoch, stale = float("inf"), None, 0, 0
        curve: list[float] = []
        start = time.perf_counter()
        for epoch in range(1, self.epochs + 1):
            net.train()
            perm = torch.randperm(len(Xt), generator=order).to(device)
            for i in range(0, len(perm), self.batch_size):
                idx = perm[i : i + self.batch_size]
                loss = step_loss(net, Xt[idx], yt[idx], {k: v[idx] for k, v in rows.items()}, constants, epoch)
                opt.zero_grad()
                loss.backward()
                opt.step()
            net.eval()
            with torch.no_grad():
                val_loss = float(validation_loss(forward(net, Xv)))
            # Checked once per epoch (a per-step check would synchronize a GPU every step): a non-finite
            # training loss makes the weights, and so the validation loss, non-finite.
            if not np.isfinite(val_loss):
                raise TrainingError(self._divergence(epoch, float(loss.detach()), X, teacher_logits, spec.tau))
            curve.append(val_loss)
            progress.epoch(epoch, self.epochs)
            if val_loss < best_loss:
                best_loss, best_epoch, stale = val_loss, epoch, 0
                best_state = copy.deepcopy(net.state_dict())
            else:
                stale += 1
                if stale >= self.patience:
                    break
        net.load_state_dict(best_state)
        for module in net:  # the stream served training; a saved model does not carry it
            if isinstance(module, Dropout):
                module.generator = None
        self.net_ = net.cpu().eval()
        self.history_ = {
            "best_epoch": best_epoch, "epochs_run": len(curve), "best_val_ce": best_loss,
            "val_ce": curve, "train_device": str(device), "fit_seconds": time.perf_counter() - start,
        }
        return self

    def _divergence(self, epoch: int, loss: float, X: np.ndarray, teacher_logits, tau: float) -> str:
        return divergence(epoch, loss, X, teacher_logits, tau, self.lr)

    def fit_teacher(self, X, y, X_val, y_val, n_classes) -> MLPClassifier:
        """Fit on hard labels as a teacher, on the CPU by the trainer of out-of-fold teachers (`fit_on_rows`,
        one model): a teacher is then the same computation as its fold teachers. Elsewhere, `fit`."""
        if resolve_device(self.device).type != "cpu":
            return self.fit(X, y, X_val, y_val, n_classes)
        ((self.net_, self.history_),) = train_on_rows(self, X, y, [None], X_val, y_val, n_classes)
        return self

    @staticmethod
    def alike(models: list) -> bool:
        """Two or more MLPs with identical settings, seed included: what any stack of them needs."""
        if len(models) < 2 or not all(type(m) is MLPClassifier for m in models):
            return False
        first = models[0].get_params()
        return all(m.get_params() == first for m in models[1:])

    @staticmethod
    def trains_together(models: list) -> bool:
        """Whether `fit_on_rows` can train these models together: `alike`, on the CPU (on another device
        dropout is torch's, whose masks a stack cannot reproduce)."""
        return MLPClassifier.alike(models) and resolve_device(models[0].device).type == "cpu"

    @staticmethod
    def fit_on_rows(models: list[MLPClassifier], X: np.ndarray, y: np.ndarray, row_sets: list, X_val: np.ndarray,
                    y_val: np.ndarray, n_classes: int, names: list[str] | None = None) -> list[MLPClassifier]:
        """Fit model k (`trains_together(models)`) on rows `row_sets[k]` of (X, y) with hard labels, as
        `models[k].fit_teacher(X[row_sets[k]], y[row_sets[k]], X_val, y_val, n_classes)` would (up to float
        rounding), all in one stacked pass (kdx.models.stack.train_on_rows). `names`: how an error message calls
        each model."""
        if not MLPClassifier.trains_together(models) or len(row_sets) != len(models):
            raise ValueError("fit_on_rows needs two or more CPU MLPs with identical settings and one row set each")
        for model, (net, history) in zip(models, train_on_rows(models[0], X, y, row_sets, X_val, y_val, n_classes,
                                                                 names)):
            model.net_, model.history_ = net, history
        return models

    @torch.inference_mode()
    def logits(self, X: np.ndarray) -> np.ndarray:
        return forward(self.net_, X).numpy()

    @torch.inference_mode()
    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return torch.softmax(forward(self.net_, X), dim=1).numpy()

    def n_params(self) -> int:
        return sum(p.numel() for p in self.net_.parameters() if p.requires_grad)

    def flops(self) -> float:
        """Per row: 2·in·out per linear layer (multiply-add; the bias add folded in) plus one per ReLU."""
        linear = [m for m in self.net_ if isinstance(m, nn.Linear)]
        return float(sum(2 * m.in_features * m.out_features for m in linear)
                     + sum(m.out_features for m in linear[:-1]))

    def size_bytes(self) -> int:
        buffer = io.BytesIO()
        torch.save(self.net_.state_dict(), buffer)
        return buffer.tell()

    def memory_bytes(self) -> int:
        tensors = [*self.net_.parameters(), *self.net_.buffers()]
        return sum(t.numel() * t.element_size() for t in tensors)

    def save(self, stem: Path) -> Path:
        path = Path(stem).with_suffix(".pt")
        n_in = self.net_[0].in_features
        n_out = self.net_[-1].out_features
        torch.save(
            {"params": self.get_params(), "n_in": n_in, "n_out": n_out,
             "state_dict": self.net_.state_dict(), "history": self.history_},
            path,
        )
        return path

    @classmethod
    def load(cls, path: Path) -> MLPClassifier:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        model = cls(**blob["params"])
        model.net_ = build_mlp(blob["n_in"], model.hidden, blob["n_out"], model.dropout)
        model.net_.load_state_dict(blob["state_dict"])
        model.net_.eval()
        model.history_ = blob["history"]
        return model
