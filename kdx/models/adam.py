"""Adam with L2 weight decay, exactly as torch.optim.Adam computes it on the CPU.

kdx's own because torch.optim's first step imports torch._dynamo (measured 1.1–1.3 s here), more than the
whole training of a smoke run. `fused=False` is torch's default single-tensor update, op for op (bitwise the
same weights: tests/test_stacked.py); `fused=True` calls the kernel behind torch.optim.Adam(fused=True),
one op per step for all parameters (the same update up to rounding; used for stacked students).
"""

from __future__ import annotations

import torch


class Adam:
    def __init__(self, params, lr: float, weight_decay: float = 0.0, betas=(0.9, 0.999), eps: float = 1e-8,
                 fused: bool = False):
        self.params = list(params)
        self.lr, self.weight_decay, self.betas, self.eps, self.fused = lr, weight_decay, betas, eps, fused
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        self.steps = 0

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.steps += 1
        beta1, beta2 = self.betas
        grads = [p.grad for p in self.params]
        if self.fused:
            step = [torch.tensor(float(self.steps), device=p.device) for p in self.params]
            torch._fused_adam_(self.params, grads, self.exp_avg, self.exp_avg_sq, [], step, lr=self.lr,
                               beta1=beta1, beta2=beta2, weight_decay=self.weight_decay, eps=self.eps,
                               amsgrad=False, maximize=False)
            return
        bias1 = 1 - beta1**self.steps
        bias2_sqrt = (1 - beta2**self.steps) ** 0.5
        # torch's single-tensor update, each op over all parameters at once (_foreach_*: the same
        # elementwise arithmetic, one call instead of one per parameter)
        if self.weight_decay != 0:
            grads = torch._foreach_add(grads, self.params, alpha=self.weight_decay)
        torch._foreach_lerp_(self.exp_avg, grads, 1 - beta1)
        torch._foreach_mul_(self.exp_avg_sq, beta2)
        torch._foreach_addcmul_(self.exp_avg_sq, grads, grads, value=1 - beta2)
        denom = torch._foreach_sqrt(self.exp_avg_sq)
        torch._foreach_div_(denom, bias2_sqrt)
        torch._foreach_add_(denom, self.eps)
        torch._foreach_addcdiv_(self.params, self.exp_avg, denom, value=-(self.lr / bias1))

    def keep(self, params: list[torch.Tensor], rows: torch.Tensor) -> Adam:
        """The optimizer of `params` (rows `rows` of this one's parameters), its moments and step carried over."""
        new = Adam(params, self.lr, self.weight_decay, self.betas, self.eps, self.fused)
        new.exp_avg = [m[rows].clone() for m in self.exp_avg]
        new.exp_avg_sq = [v[rows].clone() for v in self.exp_avg_sq]
        new.steps = self.steps
        return new
