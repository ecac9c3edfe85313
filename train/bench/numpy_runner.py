"""NumPy: the project's hand-written MLP trained by the training runs' ``NumpyBackend``."""

from __future__ import annotations

import time

import numpy as np

from numpy_mlp import MLP
from numpy_mlp.optim import SGD
from train.backends.numpy_backend import NumpyBackend
from train.bench.records import Record
from train.bench.timing import Runner
from train.bench.workloads import Workload


def numpy_runner(wl: Workload) -> Runner:
    """K SGD steps per window through ``NumpyBackend.train`` (nothing to compile:
    compile_s is the first step)."""
    n_in = int(np.prod(wl.train_x.shape[1:]))
    x = wl.train_x.reshape(len(wl.train_x), -1).astype(np.float32)
    note = ""
    if wl.suite == "mlp-cifar":
        # A NumPy user normalises the data set once, up front. Plain SGD, as the original's NumPy MLP
        # trains (the CIFAR experiment's NumPy twin uses numpy_mlp.optim.AdamW; not timed here).
        x = ((x / 255.0).reshape(-1, 3) - wl.mean).reshape(x.shape) / np.tile(wl.std, n_in // 3)
        note = "SGD (as the original's NumPy MLP; JAX and PyTorch rows: AdamW); data normalised once up front"
    backend = NumpyBackend(MLP(n_in, wl.hidden, wl.n_classes, seed=0),
                           {"train_x": x, "train_y": wl.train_y}, optimizer=SGD(wl.lr), eval_splits=())
    # The CIFAR MLP in NumPy is several times slower per step than the others: fewer steps per
    # window keep its rounds short, so the interleaved rounds (and the paired ratios) can be many.
    idx = wl.idx if wl.suite == "toy" else wl.idx[: max(1, len(wl.idx) // 4)]
    rec = Record(wl.suite, "numpy", "step", batch_size=wl.batch, steps_per_window=len(idx),
                 note=note)
    t = time.perf_counter()
    backend.train(idx[:1])
    rec.compile_s = time.perf_counter() - t
    return Runner(rec, lambda: backend.train(idx))
