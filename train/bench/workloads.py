"""One suite's sizes, data and experiment config: every framework trains on the same batches.

The config is the experiment's own (``mlp_toy.ToyConfig``, ``cifar.mlp_config`` /
``cifar.cnn_config``, ``rnn.RNNConfig``), so learning rates, hidden sizes and optimizers are the
training runs' and not copies of them.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from data.cifar10 import channel_stats
from data.palindrome import make_palindrome_data
from data.toy import make_toy_data
from numpy_mlp.model import parse_hidden
from train.engine.schedule import batch_stream
from train.bench.records import SUITES
from train.experiments import cifar, mlp_toy, rnn
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
    data: Any = None                 # the toy data set, which mlp_toy.build_backends takes

    @property
    def lr(self) -> float:
        return self.cfg.lr

    @property
    def hidden(self) -> tuple[int, ...]:
        """Hidden sizes: the MLPs' layers, the RNN's state; none for the CNN."""
        if self.suite == "cnn":
            return ()
        h = self.cfg.hidden
        return (h,) if isinstance(h, int) else parse_hidden(h)

    @property
    def n_classes(self) -> int:
        return 2 if self.suite == "toy" else 10


# (batch, steps per window K, timed windows, warm-up windows) by suite, platform and --quick.
# Windows are sized so that the clock and the final device sync are noise; on a GPU they are few,
# because compilation, not timing, dominates a run there. XLA:CPU's convolutions are slow, so the
# CPU CNN's windows are one small step; on a GPU it runs the seed's batch 256.
_PLAN = {
    "toy": {"cpu": (30, 500, 15, 2), "cpu-quick": (30, 300, 9, 1),
            "gpu": (30, 500, 15, 2), "gpu-quick": (30, 300, 7, 1)},
    "mlp-cifar": {"cpu": (256, 8, 15, 1), "cpu-quick": (256, 4, 11, 1),
                  "gpu": (256, 50, 7, 1), "gpu-quick": (256, 50, 5, 1)},
    "cnn": {"cpu": (32, 1, 3, 1), "cpu-quick": (8, 1, 3, 1),
            "gpu": (256, 30, 5, 1), "gpu-quick": (256, 20, 5, 1)},
    "rnn": {"cpu": (128, 20, 9, 1), "cpu-quick": (128, 10, 7, 1),
            "gpu": (128, 100, 5, 1), "gpu-quick": (128, 100, 5, 1)},
}
# Synthetic CIFAR train set on a GPU: CIFAR-10's size, so every step gathers its random batch
# from a realistically large array (a small one stays in cache and flatters the gather).
GPU_TRAIN_IMAGES = 50_000
RNN_LENGTH = 15   # the palindrome length the bench trains on


@functools.lru_cache(maxsize=2)
def synthetic_cifar(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(uint8 images, int32 labels, channel mean, channel std), random: the content does not change
    the speed, and no data set is needed. Cached: a batch sweep asks for the same set again."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xBE4C]))
    x = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, size=n).astype(np.int32)
    return (x, y, *channel_stats(x))


def _suite_data(suite: str, b: int, *, gpu: bool, seed: int) -> dict:
    """The experiment config and host data of ``suite`` at batch ``b`` (Workload fields)."""
    if suite == "toy":
        cfg = mlp_toy.ToyConfig(framework="jax", batch_size=b, seed=seed, devices=1)
        d = make_toy_data(cfg.dataset, n_samples=cfg.samples, noise=cfg.noise,
                          test_fraction=cfg.test_fraction, seed=seed)
        return {"cfg": cfg, "train_x": d.train_x, "train_y": d.train_y, "data": d}
    if suite in ("mlp-cifar", "cnn"):
        make = cifar.mlp_config if suite == "mlp-cifar" else cifar.cnn_config
        x, y, mean, std = synthetic_cifar(max(GPU_TRAIN_IMAGES if gpu else 2048, 2 * b), seed)
        cfg = make(batch_size=b, seed=seed, devices=1)
        return {"cfg": cfg, "train_x": x, "train_y": y, "mean": mean, "std": std}
    cfg = rnn.RNNConfig(input_length=RNN_LENGTH, data_size=max(4096, 2 * b), batch_size=b,
                        seed=seed, devices=1)
    d = make_palindrome_data(cfg.input_length, data_size=cfg.data_size,
                             portion_train=cfg.portion_train, seed=seed)
    return {"cfg": cfg, "train_x": d.train_x, "train_y": d.train_y}


def make_workload(suite: str, *, gpu: bool, quick: bool, seed: int, batch: int | None = None,
                  steps: int | None = None, windows: int | None = None,
                  warmup: int | None = None) -> Workload:
    if suite not in SUITES:
        raise UsageError(f"unknown suite {suite!r}; choose from {', '.join(SUITES)}")
    b0, k, w, wu = _PLAN[suite][("gpu" if gpu else "cpu") + ("-quick" if quick else "")]
    b = batch or b0
    # A larger batch takes proportionally fewer steps per window, so a window's work stays the same.
    k = steps or (k if b <= b0 else max(min(k, 10), round(k * b0 / b)))
    w, wu = windows or w, (wu if warmup is None else warmup)
    fields = _suite_data(suite, b, gpu=gpu, seed=seed)
    n = len(fields["train_y"])
    if n < b:
        raise UsageError(f"--batch-size {b} is larger than the {n} examples of suite {suite}")
    fields["train_y"] = fields["train_y"].astype(np.int32)
    return Workload(suite, b, k, w, wu, idx=batch_stream(n, b, k, seed), **fields)


def with_precision(cfg, precision: str):
    """``cfg`` at ``precision`` where the experiment has one (the toy MLP is fp32 only)."""
    return dataclasses.replace(cfg, precision=precision) if hasattr(cfg, "precision") else cfg
