"""Efficiency profile of a fitted model: size, CPU latency of the prediction path, inference memory.

Every figure is measured on the CPU with a fixed, recorded thread count, on `predict_proba` — the call
a user makes (preprocessed rows in, class probabilities out) — for torch and scikit-learn models alike; a
pretrained teacher is timed on its own raw input, built before the timing (Classifier.prediction_call).
"""

from __future__ import annotations

import contextlib
import functools
import time
import tracemalloc
import weakref

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from kdx.config.schema import ProfileSettings  # noqa: F401 — the profile's settings, as the config's schema
from kdx.data.rows import contiguous
from kdx.models import Classifier


@contextlib.contextmanager
def cpu_threads(n: int):
    """Fix torch intra-op threads and BLAS/OpenMP pools (scikit-learn) to `n`, restoring them afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        torch.set_num_threads(before)


def time_calls(fn, warmup: int, repeats: int) -> np.ndarray:
    """Seconds of each of `repeats` calls of `fn`, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = np.empty(repeats)
    for i in range(repeats):
        start = time.perf_counter_ns()
        fn()
        times[i] = time.perf_counter_ns() - start
    return times * 1e-9


class TensorMemoryTracker(TorchDispatchMode):
    """Peak bytes of tensor storage that torch ops allocate while active.

    Each op's output counts from creation until its Python tensor is released; outputs of view ops and
    in-place results (storage shared with an input or already counted) allocate nothing and are skipped.
    """

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # torch wraps a mode's __torch_dispatch__ in torch._dynamo.disable (against torch.compile tracing
        # into it), which imports torch._dynamo at the first op: 2.2 s of a 10 s smoke run. Nothing here
        # is compiled; torch's documented opt-out of that wrapping.
        return False

    def __init__(self):
        super().__init__()
        self.live = 0
        self.peak = 0
        self._counted: set[int] = set()

    def _release(self, ptr: int, nbytes: int) -> None:
        self.live -= nbytes
        self._counted.discard(ptr)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if getattr(func, "is_view", False):
            return out
        inputs = {t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0]
                  if isinstance(t, torch.Tensor)}
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            ptr, nbytes = storage.data_ptr(), storage.nbytes()
            if ptr in inputs or ptr in self._counted or nbytes == 0:
                continue
            self._counted.add(ptr)
            self.live += nbytes
            self.peak = max(self.peak, self.live)
            weakref.finalize(t, self._release, ptr, nbytes)
        return out


@functools.cache
def _warm_dispatch_mode() -> None:
    """Enter a dispatch mode once before anything is traced: whatever torch sets up at a mode's first op
    (torch._dynamo's import, 2.2 s, where a torch version ignores _should_skip_dynamo; far longer under
    tracemalloc) must not count as a model's allocations."""
    with TensorMemoryTracker():
        torch.zeros(1) + 1


def peak_inference_bytes(fn, calls: int = 3) -> int:
    """Peak memory allocated by one call of `fn` beyond what was live before it: the least of `calls` calls.

    Tensor storage created by torch ops (TorchDispatchMode, above) plus NumPy and Python allocations
    (tracemalloc; NumPy reports its buffers to it). The two peaks are added: an upper bound when both
    kinds are used in one call. Allocator caching and page granularity are not counted: this is what
    the model needs, not what the process's RSS happens to show.
    tracemalloc sees every thread's allocations (the progress display's refresh, a test runner's channel):
    they can only add to a call's figure, so the least of a few calls is the call's own.
    """
    _warm_dispatch_mode()
    return min(_peak_of_one_call(fn) for _ in range(max(1, calls)))


def _peak_of_one_call(fn) -> int:
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base, _ = tracemalloc.get_traced_memory()
    tracker = TensorMemoryTracker()
    with tracker:
        result = fn()
    _, peak = tracemalloc.get_traced_memory()
    del result
    if not was_tracing:
        tracemalloc.stop()
    return int(tracker.peak + max(0, peak - base))


def profiled_rows(n_rows: int, batch_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the row timed at batch 1 and of the rows timed as a batch: the same for every model and
    runtime of a seed. Fewer rows than the batch (a small test split): drawn with replacement."""
    rng = np.random.default_rng(seed)
    one = rng.integers(n_rows, size=1)
    return one, rng.choice(n_rows, batch_size, replace=n_rows < batch_size)


def profile_model(model: Classifier, rows: np.ndarray, settings: ProfileSettings, seed: int = 0) -> dict:
    """Size, latency (batch 1 and `settings.batch_size`) and inference memory of `model` on `rows`."""
    first, picks = profiled_rows(len(rows), settings.batch_size, seed)
    one, batch = contiguous(rows[first]), contiguous(rows[picks])  # a model reading raw rows keeps them
    out = {"params": model.n_params(), "size_bytes": model.size_bytes(), "model_mb": model.memory_bytes() / 2**20}
    with cpu_threads(settings.threads), torch.inference_mode():
        for label, x in (("", one), ("batch_", batch)):
            t = time_calls(model.prediction_call(x), settings.warmup, settings.repeats) * 1e3
            out[f"latency_{label}ms"] = float(t.mean())
            out[f"latency_{label}median_ms"] = float(np.median(t))
            out[f"latency_{label}p95_ms"] = float(np.percentile(t, 95))
        out["latency_per_row_ms"] = out["latency_batch_ms"] / settings.batch_size
        if settings.memory:
            out["peak_mb_1"] = peak_inference_bytes(model.prediction_call(one)) / 2**20
            out["peak_mb_batch"] = peak_inference_bytes(model.prediction_call(batch)) / 2**20
    return out


def relative_to_teacher(student: dict, teacher: dict) -> dict:
    """Parameter reduction ratio and latency reductions (torch/scikit-learn and, when measured, onnxruntime)
    of a student against its teacher."""
    out = {"prr": 1.0 - student["params"] / teacher["params"]}
    for prefix in ("", "ort_"):
        for size in ("", "batch_"):
            key = f"{prefix}latency_{size}ms"
            if student.get(key) is not None and teacher.get(key) is not None:
                out[f"{prefix}latency_{size}reduction"] = 1.0 - student[key] / teacher[key]
    return out
