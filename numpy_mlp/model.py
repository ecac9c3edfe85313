"""A NumPy MLP built from the hand-written layers, with mini-batch SGD."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from numpy_mlp.layers import CrossEntropy, Linear, Module, ReLU, SoftMax
from numpy_mlp.optim import SGD


def parse_hidden(hidden: str | Sequence[int]) -> tuple[int, ...]:
    """'20' or '1024, 512' -> (20,) or (1024, 512). An empty string means no hidden layer."""
    if isinstance(hidden, str):
        parts = [p.strip() for p in hidden.split(",") if p.strip()]
        try:
            sizes = tuple(int(p) for p in parts)
        except ValueError:
            raise ValueError(f"hidden sizes must be comma-separated integers, got {hidden!r}") from None
    else:
        sizes = tuple(int(s) for s in hidden)
    if any(s <= 0 for s in sizes):
        raise ValueError(f"hidden sizes must be positive, got {hidden!r}")
    return sizes


class MLP:
    """Linear -> ReLU -> ... -> Linear (logits) -> SoftMax, trained with CrossEntropy.

    Shapes: x (N, n_inputs) -> logits (N, n_classes). ``layers`` holds the
    modules in order; ``linears`` the ones with parameters.
    """

    def __init__(self, n_inputs: int, hidden: str | Sequence[int], n_classes: int, *,
                 seed: int = 0, dtype=np.float32) -> None:
        rng = np.random.default_rng(seed)
        sizes = (n_inputs, *parse_hidden(hidden), n_classes)
        self.dtype = np.dtype(dtype)
        self.layers: list[Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            self.layers.append(Linear(a, b, rng=rng, dtype=self.dtype))
            if i < len(sizes) - 2:
                self.layers.append(ReLU())
        self.softmax = SoftMax()
        self.loss_fn = CrossEntropy()

    @property
    def linears(self) -> list[Linear]:
        return [m for m in self.layers if isinstance(m, Linear)]

    def get_weights(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """[(W, b), ...] per Linear, input-major (the Flax kernel layout)."""
        return [(m.params["W"].copy(), m.params["b"].copy()) for m in self.linears]

    def set_weights(self, weights: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
        linears = self.linears
        if len(weights) != len(linears):
            raise ValueError(f"expected {len(linears)} (W, b) pairs, got {len(weights)}")
        for m, (w, b) in zip(linears, weights):
            if w.shape != m.params["W"].shape or b.shape != m.params["b"].shape:
                raise ValueError(f"weight shape {w.shape}/{b.shape} does not match {m.params['W'].shape}")
            m.params["W"] = np.asarray(w, dtype=self.dtype).copy()
            m.params["b"] = np.asarray(b, dtype=self.dtype).copy()

    @property
    def param_count(self) -> int:
        return sum(p.size for m in self.linears for p in m.params.values())

    def logits(self, x: np.ndarray) -> np.ndarray:
        out = np.asarray(x, dtype=self.dtype)
        for m in self.layers:
            out = m.forward(out)
        return out

    def loss(self, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        """Forward only: (mean cross-entropy, probabilities (N, C))."""
        p = self.softmax.forward(self.logits(x))
        return float(self.loss_fn.forward(p, y)), p

    def loss_and_grads(self, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        """Forward and backward; parameter gradients end up in each Linear's ``grads``."""
        loss, p = self.loss(x, y)
        d = self.softmax.backward(self.loss_fn.backward(1.0))
        for m in reversed(self.layers):
            d = m.backward(d)
        return loss, p

    def sgd_step(self, x: np.ndarray, y: np.ndarray, lr: float) -> tuple[float, float]:
        """One mini-batch SGD update; returns the batch's (loss, accuracy) before the update."""
        return self.step(x, y, SGD(lr))

    def step(self, x: np.ndarray, y: np.ndarray, optimizer) -> tuple[float, float]:
        """One mini-batch update by ``optimizer`` (``numpy_mlp.optim``); the batch's (loss, accuracy) before it."""
        loss, p = self.loss_and_grads(x, y)
        optimizer.step([m.params for m in self.linears], [m.grads for m in self.linears])
        return loss, float((p.argmax(axis=1) == y).mean())

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """(mean loss, accuracy) on a whole set."""
        loss, p = self.loss(x, y)
        return loss, float((p.argmax(axis=1) == y).mean())
