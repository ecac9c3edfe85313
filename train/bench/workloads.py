"""One suite at one batch size: its data, its window's batches and the experiment's config, so
every framework trains on the same batches with the training runs' own settings."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from train.bench.suites import SUITES, TABLE, Suite, unknown_suite
from train.engine.schedule import batch_stream
from train.errors import UsageError


@dataclass
class Workload:
    """One suite at one batch size: its data on the host and the batches of one window."""

    suite: str
    batch: int
    steps: int                       # K: steps per timed window (and per fused call)
    windows: int
    warmup: int
    # toy float32 [N, 2]; CIFAR uint8 [N, 32, 32, 3]; RNN uint8 digits [N, T]
    train_x: np.ndarray
    train_y: np.ndarray              # int32 [N]
    idx: np.ndarray                  # int32 [K, B]: the batches of one window
    cfg: Any                         # the experiment's config (batch size and seed set)
    mean: np.ndarray | None = None   # CIFAR channel statistics (normalisation)
    std: np.ndarray | None = None
    data: Any = None                 # the toy data set, which mlp_toy.make_backend takes

    @property
    def spec(self) -> Suite:
        """The suite's hooks (:mod:`train.bench.suites`)."""
        return TABLE[self.suite]


def make_workload(suite: str, *, gpu: bool, quick: bool, seed: int, batch: int | None = None,
                  steps: int | None = None, windows: int | None = None,
                  warmup: int | None = None) -> Workload:
    if suite not in SUITES:
        raise UsageError(unknown_suite(suite))
    spec = TABLE[suite]
    b0, k, w, wu = spec.plan[("gpu" if gpu else "cpu") + ("-quick" if quick else "")]
    b = batch or b0
    # A larger batch takes proportionally fewer steps per window, so a window's work stays the same.
    k = steps or (k if b <= b0 else max(min(k, 10), round(k * b0 / b)))
    w, wu = windows or w, (wu if warmup is None else warmup)
    cfg = spec.config(b, seed)
    fields = spec.data(cfg, gpu=gpu, batch=b)
    n = len(fields["train_y"])
    if n < b:
        raise UsageError(f"--batch-size {b} is larger than the {n} examples of suite {suite}")
    fields["train_y"] = fields["train_y"].astype(np.int32)
    return Workload(suite, b, k, w, wu, idx=batch_stream(n, b, k, seed), cfg=cfg, **fields)


def with_precision(cfg, precision: str):
    """``cfg`` at ``precision`` where the experiment has one (the toy MLP is fp32 only)."""
    return dataclasses.replace(cfg, precision=precision) if hasattr(cfg, "precision") else cfg
