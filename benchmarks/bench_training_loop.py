"""Index-slicing training loop vs the same loop over DataLoader(TensorDataset), batch 256, one run."""

from __future__ import annotations

import time

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from kdx.data import load_adult
from kdx.data.preprocess import Preprocessor
from kdx.data.split import stratified_split
from kdx.models.losses import kd_loss
from kdx.models.mlp import build_mlp


def _adult_train():
    data = load_adult()
    split = stratified_split(data.y, 0)
    pre = Preprocessor(data.numeric, data.categorical).fit(data.X.iloc[split.train])
    return torch.from_numpy(pre.transform(data.X.iloc[split.train])), torch.from_numpy(data.y[split.train])


def _epoch_slicing(net, opt, X, y, T, batch):
    perm = torch.randperm(len(X))
    for i in range(0, len(X), batch):
        idx = perm[i : i + batch]
        loss = kd_loss(net(X[idx]), T[idx], y[idx], 4.0, 0.5)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def _epoch_dataloader(net, opt, loader):
    for xb, yb, tb in loader:
        loss = kd_loss(net(xb), tb, yb, 4.0, 0.5)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def main(epochs: int = 3) -> dict:
    X, y = _adult_train()
    T = torch.randn(len(X), 2)
    results = {}
    for hidden, label in (((64, 32), "student MLP 64-32"), ((512, 256, 128, 64, 32), "teacher DNN")):
        times = {}
        for mode in ("slicing", "dataloader"):
            torch.manual_seed(0)
            net = build_mlp(X.shape[1], hidden, 2)
            opt = torch.optim.Adam(net.parameters(), 1e-3)
            loader = DataLoader(TensorDataset(X, y, T), batch_size=256, shuffle=True)
            start = time.perf_counter()
            for _ in range(epochs):
                if mode == "slicing":
                    _epoch_slicing(net, opt, X, y, T, 256)
                else:
                    _epoch_dataloader(net, opt, loader)
            times[mode] = (time.perf_counter() - start) / epochs
        ratio = times["dataloader"] / times["slicing"]
        results[label] = {**times, "speedup": ratio, "rows_per_s_slicing": len(X) / times["slicing"]}
        print(f"  {label:18s} slicing {times['slicing']:.3f} s/epoch ({len(X) / times['slicing']:,.0f} rows/s) | "
              f"DataLoader {times['dataloader']:.3f} s/epoch | speed-up x{ratio:.2f}")
    return results


if __name__ == "__main__":
    print(np.__version__)
    main()
