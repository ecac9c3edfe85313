"""The interface every framework's backend implements, so one loop drives NumPy, JAX and PyTorch alike.

``train(idx [K, B])`` -> per-step ``{"loss": [K], "accuracy": [K]}`` and ``evaluate()`` ->
``{split: {"loss", "accuracy", "count"}}`` are separate calls so the loop times them apart. A
backend with ``runs = S`` takes ``[S, K, B]`` and speaks lists of S (``jax_multiseed``).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from train.errors import UsageError
from train.precision import Precision


class Backend(Protocol):
    framework: str            # jax, numpy, torch
    platform: str             # where it trains: cpu, gpu, cuda, ...
    param_count: int
    devices: int              # devices one step is spread over
    compiler: str             # how it runs: xla, torch-eager, numpy
    last_predictions: dict[str, np.ndarray]   # {split: labels predicted at the last evaluation}

    @property
    def compile_time_s(self) -> float:
        """Seconds spent compiling so far (the loop's timings leave it out)."""

    def train(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        """Train one period on batches ``idx`` [K, B]; per-step metrics [K] on the host."""

    def evaluate(self) -> dict[str, dict]:
        """{split: {"loss", "accuracy", "count"}} in eval mode."""

    def host_state(self) -> Any:
        """Everything training carries from one period to the next, as a pytree of host arrays."""

    def load_state(self, state: Any) -> None:
        """Continue from ``host_state()``'s value."""

    def device_info(self) -> dict:
        """Where this backend trains (config.json's ``devices``)."""

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities of raw inputs ``x``, eval mode."""


# -- which frameworks exist -------------------------------------------------------------------------
# Imported only when used, as PyTorch is optional. Each module has NAME, available(), MISSING and
# from_jax; adding a framework is a backend module and a line here.
FRAMEWORKS = {"numpy": "train.backends.numpy_backend", "jax": "train.backends.jax_backend",
              "torch": "train.backends.torch_backend"}


def module(framework: str):
    """The backend module of ``framework``."""
    return importlib.import_module(FRAMEWORKS[framework])


def available(framework: str) -> bool:
    return module(framework).available()


def require(framework: str) -> None:
    """A one-line UsageError when ``framework`` is not installed here."""
    if not available(framework):
        raise UsageError(module(framework).MISSING)


class Chosen(tuple):
    """The frameworks a run trains in, in order; ``missing``: those ``all`` left out as not installed."""

    missing: tuple[str, ...] = ()


def choose(requested: str, order: tuple[str, ...] = (), unsupported: dict[str, str] | None = None,
           *, aliases: dict[str, str] | None = None) -> Chosen:
    """The frameworks ``requested`` (one, a comma list or ``all``) names, in the experiment's ``order``
    first; ``.missing`` lists those ``all`` left out. ``unsupported`` maps a framework to why not."""
    unsupported = unsupported or {}
    supported = (*order, *(fw for fw in FRAMEWORKS if fw not in order))
    requested = (aliases or {}).get(requested, requested)
    if requested == "all":
        wanted = tuple(fw for fw in supported if fw not in unsupported)
        chosen = Chosen(fw for fw in wanted if available(fw))
        chosen.missing = tuple(fw for fw in wanted if not available(fw))
        return chosen
    names = tuple(dict.fromkeys(n.strip() for n in requested.split(",") if n.strip()))
    for fw in names:
        if fw not in supported:
            raise UsageError(f"--framework must be one of {', '.join(supported)}, a comma list of them, or all, "
                             f"got {requested!r}")
        if fw in unsupported:
            raise UsageError(f"--framework {fw}: {unsupported[fw]}")
    if not names:
        raise UsageError(f"--framework must name a framework ({', '.join(supported)}, or all), got {requested!r}")
    for fw in names:
        require(fw)
    return Chosen(fw for fw in supported if fw in names)


# -- what every framework realises in its own spelling ------------------------------------------------
@dataclass(frozen=True)
class Optimizer:
    """An experiment's optimizer, one value that each framework spells its own way; the semantics
    are PyTorch's (AdamW, RMSprop + StepLR + clipping), as in docs/cross-framework.md."""

    kind: str
    lr: float
    weight_decay: float = 0.0
    clip_norm: float | None = None
    lr_step: int | None = None
    lr_gamma: float = 1.0


@dataclass(frozen=True)
class Recipe:
    """What every backend needs to train the same thing, apart from the model. ``normalize``: per-channel
    (mean, std) for uint8 NHWC images, or None. ``tiny``: fixed costs dominate, so it runs on the host."""

    optimizer: Optimizer
    seed: int
    precision: Precision
    eval_splits: tuple[str, ...] = ("train", "test")
    eval_batch: int | None = None
    normalize: tuple[np.ndarray, np.ndarray] | None = None
    steps_per_epoch: int | None = None
    dtype: str = "float32"
    devices: Sequence | None = None   # JAX's local devices to train on (select_devices); None: the first
    parallel: str | None = None       # the data-parallel path (jax_parallel.PARALLEL); None: pmap, plain jit on one
    tiny: bool = False


def from_jax(framework: str, jax_model, recipe: Recipe, arrays: Mapping[str, np.ndarray]):
    """The ``framework`` backend that trains ``jax_model`` (its initial weights converted) by ``recipe``."""
    require(framework)
    return module(framework).from_jax(jax_model, recipe, arrays)
