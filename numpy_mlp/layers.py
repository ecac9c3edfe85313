"""Hand-written layers for the NumPy MLP, cs231n style.

``forward`` caches what ``backward`` needs; ``backward`` returns the input gradient and stores
parameter gradients in ``grads``. Every derivative is by hand: no autodiff.
"""

from __future__ import annotations

import math

import numpy as np


class Module:
    """Base class: parameters and their gradients live in two dicts of arrays."""

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}

    def forward(self, *args):  # pragma: no cover - interface
        raise NotImplementedError

    def backward(self, *args):  # pragma: no cover - interface
        raise NotImplementedError


def torch_uniform_bound(fan_in: int) -> float:
    """1/sqrt(fan_in), the bound of PyTorch's default U(-b, b) for Linear and Conv2d weights and biases
    (``kaiming_uniform_(a=sqrt(5))``); every PyTorch-style initialiser of the project uses it."""
    if fan_in < 1:
        raise ValueError(f"fan_in must be >= 1, got {fan_in}")
    return 1.0 / math.sqrt(fan_in)  # correctly rounded, as np.sqrt


def torch_uniform_init(fan_in: int, shape: tuple[int, ...], rng: np.random.Generator,
                       dtype=np.float32) -> np.ndarray:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's nn.Linear default, which the original used."""
    bound = torch_uniform_bound(fan_in)
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


class Linear(Module):
    """y = x @ W + b: x (N, in) -> y (N, out); W (in, out) as a Flax kernel, so weights move without a transpose."""

    def __init__(self, in_features: int, out_features: int, *, rng: np.random.Generator,
                 dtype=np.float32) -> None:
        super().__init__()
        self.params["W"] = torch_uniform_init(in_features, (in_features, out_features), rng, dtype)
        self.params["b"] = torch_uniform_init(in_features, (out_features,), rng, dtype)
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self._x: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._x = x
        return x @ self.params["W"] + self.params["b"]

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """dout (N, out) -> dx (N, in); fills grads["W"] (in, out) and grads["b"] (out,)."""
        x = self._x
        self.grads["W"] = x.T @ dout
        self.grads["b"] = dout.sum(axis=0)
        return dout @ self.params["W"].T


class ReLU(Module):
    """y = max(x, 0), elementwise. Shapes: any -> same."""

    def __init__(self) -> None:
        super().__init__()
        self._mask: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._mask = x > 0
        return np.where(self._mask, x, 0).astype(x.dtype, copy=False)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return np.where(self._mask, dout, 0).astype(dout.dtype, copy=False)


class SoftMax(Module):
    """Row-wise softmax (N, C) -> (N, C), shifted by the row maximum so large logits do not overflow."""

    def __init__(self) -> None:
        super().__init__()
        self._p: np.ndarray | None = None

    def forward(self, z: np.ndarray) -> np.ndarray:
        e = np.exp(z - z.max(axis=1, keepdims=True))
        self._p = e / e.sum(axis=1, keepdims=True)
        return self._p

    def backward(self, dp: np.ndarray) -> np.ndarray:
        """dp (N, C) -> dz (N, C). The Jacobian is diag(p) - p p^T, applied row by row."""
        p = self._p
        return p * (dp - (dp * p).sum(axis=1, keepdims=True))


class CrossEntropy(Module):
    """Mean NLL: p (N, C), y (N,) int -> scalar; p is floored so a saturated softmax gives a finite loss."""

    def __init__(self) -> None:
        super().__init__()
        self._cache: tuple[np.ndarray, np.ndarray] | None = None

    def forward(self, p: np.ndarray, y: np.ndarray) -> np.ndarray:
        rows = np.arange(p.shape[0])
        picked = np.maximum(p[rows, y], np.finfo(p.dtype).tiny)
        self._cache = (p, y)
        return -np.log(picked).mean()

    def backward(self, dloss: float = 1.0) -> np.ndarray:
        """Scalar upstream gradient -> dp (N, C): -1/(N p_y) at the label, 0 elsewhere."""
        p, y = self._cache
        n = p.shape[0]
        rows = np.arange(n)
        dp = np.zeros_like(p)
        dp[rows, y] = -dloss / (n * np.maximum(p[rows, y], np.finfo(p.dtype).tiny))
        return dp
