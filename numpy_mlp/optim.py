"""Optimizers for the NumPy MLP: plain SGD and a hand-written AdamW (PyTorch's and optax's semantics).

An optimizer updates a list of parameter dicts in place from the matching gradient dicts
(``Linear.params`` / ``Linear.grads``), so the model stays free of optimizer state.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class SGD:
    def __init__(self, lr: float) -> None:
        self.lr = lr

    def state_dict(self, params: Sequence[dict]) -> dict:
        """The state a checkpoint keeps: none, plain SGD carries nothing from step to step."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def step(self, params: Sequence[dict], grads: Sequence[dict]) -> None:
        for p, g in zip(params, grads):
            for k in p:
                p[k] -= p[k].dtype.type(self.lr) * g[k]


class AdamW:
    """Adam with decoupled weight decay (Loshchilov & Hutter), as ``torch.optim.AdamW`` and ``optax.adamw``:

        m = b1 m + (1 - b1) g;   v = b2 v + (1 - b2) g^2
        p -= lr * (m / (1 - b1^t) / (sqrt(v / (1 - b2^t)) + eps) + weight_decay * p)

    eps is added outside the square root, after bias correction; the decay uses the parameter
    before this step's update, unscaled by the adaptive denominator. Moments are kept in the
    parameters' dtype.
    """

    def __init__(self, lr: float, *, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
                 weight_decay: float = 0.01) -> None:
        self.lr, self.b1, self.b2, self.eps, self.weight_decay = lr, b1, b2, eps, weight_decay
        self.t = 0
        self.m: list[dict] | None = None
        self.v: list[dict] | None = None

    def state_dict(self, params: Sequence[dict]) -> dict:
        """Step count and moments as arrays (copies); before the first step, the zeros it starts from."""
        moments = {"m": self.m, "v": self.v} if self.m is not None else {"m": _zeros(params), "v": _zeros(params)}
        return {"t": np.asarray(self.t, np.int64),
                **{name: {str(i): {k: a.copy() for k, a in d.items()} for i, d in enumerate(ms)}
                   for name, ms in moments.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.t = int(state["t"])
        self.m, self.v = ([{k: np.array(a) for k, a in state[name][str(i)].items()} for i in range(len(state[name]))]
                          for name in ("m", "v"))

    def step(self, params: Sequence[dict], grads: Sequence[dict]) -> None:
        if self.m is None:
            self.m, self.v = _zeros(params), _zeros(params)
        self.t += 1
        bc1, bc2 = 1 - self.b1 ** self.t, 1 - self.b2 ** self.t
        for p, g, m, v in zip(params, grads, self.m, self.v):
            for k in p:
                t = p[k].dtype.type
                m[k] = t(self.b1) * m[k] + t(1 - self.b1) * g[k]
                v[k] = t(self.b2) * v[k] + t(1 - self.b2) * g[k] * g[k]
                update = (m[k] / t(bc1)) / (np.sqrt(v[k] / t(bc2)) + t(self.eps)) + t(self.weight_decay) * p[k]
                p[k] -= t(self.lr) * update


def _zeros(params: Sequence[dict]) -> list[dict]:
    return [{k: np.zeros_like(a) for k, a in p.items()} for p in params]
