"""The interface every framework's backend implements, so one loop drives NumPy, JAX and PyTorch alike.

A backend trains for a period given its batch indices ``[K, B]`` (``train(idx)`` -> per-step
train metrics ``{"loss": [K], "accuracy": [K]}`` on the host) and evaluates the splits it was
built for (``evaluate()`` -> ``{split: {"loss", "accuracy", "count"}}``); the two are separate
calls so the loop can time them apart. Every backend sees the same batches in the same order.

That is one run. A backend that trains S runs side by side (``jax_multiseed``) says so with
``runs = S``: it takes indices ``[S, K, B]`` and returns, and loads, lists of S of the above.
The engine drives every backend that way, a one-run backend as S = 1 (``train.engine.loop.OneRun``).
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
# Each backend module is imported only when its framework is used (PyTorch is optional); each has
# ``NAME``, ``available()``, ``MISSING`` (the one-line error when it is not installed) and ``from_jax``.
# Adding a framework is a backend module and a line here: every experiment then offers it.
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
    """The frameworks ``--framework requested`` names (with ``.missing``: those ``all`` left out).

    ``requested`` is one framework, a comma list of them, or ``all`` (every one installed). Runs go
    in the experiment's ``order``, then the other frameworks in registry order. ``unsupported`` maps
    a framework this experiment's settings cannot run to why. A framework named explicitly but not
    installed is a one-line UsageError.
    """
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
    """An experiment's optimizer, as each framework spells it (optax, torch.optim, numpy_mlp.optim).

    ``sgd``: plain SGD. ``adamw``: PyTorch's AdamW (betas 0.9, 0.999, eps 1e-8, decoupled ``weight_decay``).
    ``rmsprop``: PyTorch's RMSprop (alpha 0.99, eps 1e-8 outside the sqrt) with StepLR (``lr_gamma`` every
    ``lr_step`` epochs) after PyTorch's global-norm clipping to ``clip_norm``.
    """

    kind: str
    lr: float
    weight_decay: float = 0.0
    clip_norm: float | None = None
    lr_step: int | None = None
    lr_gamma: float = 1.0


@dataclass(frozen=True)
class Recipe:
    """How a run trains, apart from its model: what every backend needs to train the same thing.

    ``normalize``: the inputs are uint8 NHWC images, scaled to [0, 1] and normalised with these
    per-channel (mean, std), in float32; None: the inputs go to the model as they are. ``eval_batch``
    None is the backend's own default. ``tiny``: a model of a few hundred weights, whose run is
    dominated by fixed costs (compiling, launches): it runs on the host and compiles cheaply.
    """

    optimizer: Optimizer
    seed: int
    precision: Precision
    eval_splits: tuple[str, ...] = ("train", "test")
    eval_batch: int | None = None
    normalize: tuple[np.ndarray, np.ndarray] | None = None
    steps_per_epoch: int | None = None
    dtype: str = "float32"
    devices: Sequence | None = None   # JAX's local devices to train on (select_devices); None: the first
    tiny: bool = False


def from_jax(framework: str, jax_model, recipe: Recipe, arrays: Mapping[str, np.ndarray]):
    """The ``framework`` backend that trains ``jax_model`` (its initial weights converted) by ``recipe``."""
    require(framework)
    return module(framework).from_jax(jax_model, recipe, arrays)
