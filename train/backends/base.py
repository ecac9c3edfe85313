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

from typing import Any, Protocol

import numpy as np


class Backend(Protocol):
    framework: str            # jax, numpy, torch
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
