"""The bench's suites: one per experiment of the registry, by the experiment's name.

Each :class:`Suite` holds the hooks the bench needs, taken from the experiment module's own
functions: its config (the registry's defaults), its data, its JAX model, optimizer and
preprocessing (or, for the toy, its whole JAX backend), its PyTorch twin and, where one exists,
its NumPy model. The runners read these hooks; none of them asks which model a suite is.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from data.cifar10 import channel_stats
from data.palindrome import make_palindrome_data
from data.toy import make_toy_data
from jax_models.cnn import CNN, resolve_conv_impl
from jax_models.rnn import resolve_unroll
from numpy_mlp import MLP as NumpyMLP
from numpy_mlp.model import parse_hidden
from numpy_mlp.optim import SGD
from train.backends.numpy_backend import NumpyBackend
from train.backends import base, jax_backend
from train.experiments import cifar, mlp_toy, rnn
from train.experiments.registry import EXPERIMENTS

# Synthetic CIFAR train set on a GPU: CIFAR-10's size, so every step gathers its random batch
# from a realistically large array (a small one stays in cache and flatters the gather).
GPU_TRAIN_IMAGES = 50_000
RNN_LENGTH = 15   # the palindrome length the bench trains on


@dataclass(frozen=True)
class Suite:
    """One experiment as the bench times it. ``plan``: (batch, steps per window K, timed windows,
    warm-up windows) by "cpu", "cpu-quick", "gpu", "gpu-quick"."""

    name: str                                  # the experiment's name in the registry
    plan: dict[str, tuple[int, int, int, int]]
    overrides: Callable[[int], dict]           # batch -> config settings the bench sets
    data: Callable[..., dict]                  # (cfg, *, gpu, batch) -> Workload fields
    # JAX: the experiment's backend (the toy), or its factories (model, optimizer, preprocessing).
    jax_backend: Callable | None = None        # (wl, cfg) -> JaxBackend
    model: Callable | None = None              # (cfg, axis_name) -> nnx.Module
    optimizer: Callable | None = None          # (cfg, wl) -> optax transformation
    preprocess: Callable | None = None         # wl -> (batch -> model input)
    jax_settings: Callable = lambda cfg: {}    # cfg -> speed-relevant choices for the record
    torch: Callable | None = None              # (wl, cfg, jax_model) -> TorchBackend
    numpy: Callable | None = None              # wl -> (NumpyBackend, steps per window, note)
    bf16: bool = True                          # False: nothing for bf16 to speed up
    fuse_on_cpu: bool = True                   # False: XLA:CPU runs it one step per call
    whole_run: bool = False                    # also time the whole run in fresh processes
    torch_nn_rnn: bool = False                 # its twin is an RNN: also time it as nn.RNN / nn.LSTM

    @property
    def recipe_batch(self) -> int:
        """The experiment's default batch: what "at the recipe batch" means."""
        return EXPERIMENTS[self.name].defaults().batch_size

    def config(self, batch: int, seed: int):
        """The experiment's own config (its defaults) at this batch and seed, on one device."""
        return dataclasses.replace(EXPERIMENTS[self.name].defaults(), batch_size=batch, seed=seed,
                                   devices=1, **self.overrides(batch))


@functools.lru_cache(maxsize=2)
def synthetic_cifar(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(uint8 images, int32 labels, channel mean, channel std), random: the content does not change
    the speed, and no data set is needed. Cached: a batch sweep asks for the same set again."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xBE4C]))
    x = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, size=n).astype(np.int32)
    return (x, y, *channel_stats(x))


def _toy_data(cfg, *, gpu: bool, batch: int) -> dict:
    d = make_toy_data(cfg.dataset, n_samples=cfg.samples, noise=cfg.noise,
                      test_fraction=cfg.test_fraction, seed=cfg.seed)
    return {"train_x": d.train_x, "train_y": d.train_y, "data": d}


def _cifar_data(cfg, *, gpu: bool, batch: int) -> dict:
    x, y, mean, std = synthetic_cifar(max(GPU_TRAIN_IMAGES if gpu else 2048, 2 * batch), cfg.seed)
    return {"train_x": x, "train_y": y, "mean": mean, "std": std}


def _rnn_data(cfg, *, gpu: bool, batch: int) -> dict:
    d = make_palindrome_data(cfg.input_length, data_size=cfg.data_size,
                             portion_train=cfg.portion_train, seed=cfg.seed)
    return {"train_x": d.train_x, "train_y": d.train_y}


def train_arrays(wl) -> dict:
    return {"train_x": wl.train_x, "train_y": wl.train_y}


def _toy_backend(framework: str):
    """The toy experiment's own backend of ``framework`` (from the NumPy model's weights)."""
    return lambda wl, cfg, *_: mlp_toy.make_backend(cfg, framework, wl.data)


def _cifar_torch(wl, cfg, jax_model):
    return base.from_jax("torch", jax_model(), cifar.recipe(cfg, wl.mean, wl.std), train_arrays(wl))


def _rnn_steps_per_epoch(wl, cfg) -> int:
    return max(1, len(wl.train_y) // cfg.batch_size)


def _rnn_torch(wl, cfg, jax_model):
    return base.from_jax("torch", jax_model(), rnn.recipe(cfg, _rnn_steps_per_epoch(wl, cfg)), train_arrays(wl))


def _toy_numpy(wl):
    return _toy_backend("numpy")(wl, wl.cfg), len(wl.idx), ""


def _cifar_numpy(wl):
    """The hand-written MLP with plain SGD, as the original's NumPy MLP trains, on data a NumPy
    user normalises once, up front (the CIFAR experiment's NumPy twin, with AdamW, is not timed)."""
    n_in = int(np.prod(wl.train_x.shape[1:]))
    x = wl.train_x.reshape(len(wl.train_x), -1).astype(np.float32)
    x = ((x / 255.0).reshape(-1, 3) - wl.mean).reshape(x.shape) / np.tile(wl.std, n_in // 3)
    model = NumpyMLP(n_in, parse_hidden(wl.cfg.hidden), 10, seed=0)
    backend = NumpyBackend(model, {"train_x": x, "train_y": wl.train_y}, optimizer=SGD(wl.cfg.lr),
                           eval_splits=())
    # Several times slower per step than the others: fewer steps per window keep its rounds
    # short, so the interleaved rounds (and the paired ratios) can be many.
    note = ("SGD (as the original's NumPy MLP; JAX and PyTorch rows: AdamW); data normalised once "
            "up front")
    return backend, max(1, len(wl.idx) // 4), note


_CIFAR = {"model": lambda cfg, axis_name: cifar.build_model(cfg, axis_name=axis_name),
          "optimizer": lambda cfg, wl: cifar.make_optimizer(cfg),
          "preprocess": lambda wl: cifar.make_preprocess(wl.mean, wl.std),
          "torch": _cifar_torch, "overrides": lambda b: {}, "data": _cifar_data}

# Windows are sized so that the clock and the final device sync are noise; on a GPU they are few,
# because compilation, not timing, dominates a run there. XLA:CPU's convolutions are slow, so the
# CPU CNN's windows are one small step; on a GPU it runs the seed's batch 256.
_SUITES = (
    Suite(mlp_toy.SPEC.name, {"cpu": (30, 500, 15, 2), "cpu-quick": (30, 300, 9, 1),
                              "gpu": (30, 500, 15, 2), "gpu-quick": (30, 300, 7, 1)},
          overrides=lambda b: {"framework": "jax"}, data=_toy_data, jax_backend=_toy_backend("jax"),
          torch=_toy_backend("torch"), numpy=_toy_numpy, bf16=False, whole_run=True),
    Suite(cifar.MLP_SPEC.name, {"cpu": (256, 8, 15, 1), "cpu-quick": (256, 4, 11, 1),
                                "gpu": (256, 50, 7, 1), "gpu-quick": (256, 50, 5, 1)},
          numpy=_cifar_numpy, **_CIFAR),
    Suite(cifar.CNN_SPEC.name, {"cpu": (32, 1, 3, 1), "cpu-quick": (8, 1, 3, 1),
                                "gpu": (256, 30, 5, 1), "gpu-quick": (256, 20, 5, 1)},
          fuse_on_cpu=jax_backend.fuses_on_cpu(CNN), **_CIFAR,
          jax_settings=lambda cfg: {"conv_impl": resolve_conv_impl("auto")}),
    Suite(rnn.SPEC.name, {"cpu": (128, 20, 9, 1), "cpu-quick": (128, 10, 7, 1),
                          "gpu": (128, 100, 5, 1), "gpu-quick": (128, 100, 5, 1)},
          overrides=lambda b: {"input_length": RNN_LENGTH, "data_size": max(4096, 2 * b)},
          data=_rnn_data, model=lambda cfg, axis_name: rnn.build_model(cfg),
          optimizer=lambda cfg, wl: rnn.make_optimizer(cfg, _rnn_steps_per_epoch(wl, cfg)),
          preprocess=lambda wl: lambda x: x,   # the RNN one-hot encodes inside the model
          jax_settings=lambda cfg: {"scan_unroll": resolve_unroll(None, cfg.input_length)},
          torch=_rnn_torch, torch_nn_rnn=True),
)
TABLE: dict[str, Suite] = {s.name: s for s in _SUITES}
SUITES = tuple(TABLE)
RECIPE_BATCH = {name: s.recipe_batch for name, s in TABLE.items()}
# Suite names before they were the experiments' names: a one-line error points to the new ones.
OLD_NAMES = {"toy": "mlp-toy", "cnn": "cnn-cifar", "rnn": "rnn-palindrome"}


def unknown_suite(name: str) -> str:
    """The one-line message for a suite name that is not one."""
    hint = f" (now {OLD_NAMES[name]!r})" if name in OLD_NAMES else ""
    return f"unknown suite {name!r}{hint}; suites are the experiments' names: {', '.join(SUITES)}"

