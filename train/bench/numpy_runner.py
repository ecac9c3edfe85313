"""NumPy: the project's hand-written MLP trained by the training runs' ``NumpyBackend``."""

from __future__ import annotations

import time

from train.bench.records import Record
from train.bench.timing import Runner
from train.bench.workloads import Workload


def numpy_runner(wl: Workload) -> Runner:
    """K SGD steps per window through ``NumpyBackend.train``, the backend the suite's hook builds
    (nothing to compile: compile_s is the first step)."""
    backend, steps, note = wl.spec.numpy(wl)
    idx = wl.idx[:steps]
    rec = Record(wl.suite, "numpy", "step", batch_size=wl.batch, steps_per_window=len(idx),
                 note=note)
    t = time.perf_counter()
    backend.train(idx[:1])
    rec.compile_s = time.perf_counter() - t
    return Runner(rec, lambda: backend.train(idx))
