"""Hand-written layers for the NumPy MLP, cs231n style.

Each module has ``forward`` (which caches what its backward needs) and
``backward`` (which maps the upstream gradient to the input gradient and, for
layers with parameters, stores the parameter gradients in ``grads``). No
autodiff anywhere: every derivative below is derived by hand. All layers work
in the dtype of their inputs and parameters (float32 or float64).
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
    """The bound b of PyTorch's default U(-b, b) for nn.Linear and nn.Conv2d weights and biases: 1/sqrt(fan_in).

    PyTorch draws the weight with ``kaiming_uniform_(a=sqrt(5))``: bound = gain * sqrt(3 / fan_in) with
    gain = sqrt(2 / (1 + a^2)) = sqrt(1/3), i.e. 1 / sqrt(fan_in); the bias uses the same bound.
    Every PyTorch-style initialiser of the project (NumPy's here, JAX's in jax_models/init.py) uses it.
    """
    if fan_in < 1:
        raise ValueError(f"fan_in must be >= 1, got {fan_in}")
    return 1.0 / math.sqrt(fan_in)  # correctly rounded, as np.sqrt


def torch_uniform_init(fan_in: int, shape: tuple[int, ...], rng: np.random.Generator,
                       dtype=np.float32) -> np.ndarray:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's nn.Linear default, which the original used."""
    bound = torch_uniform_bound(fan_in)
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


class Linear(Module):
    """y = x @ W + b.

    Shapes: x (N, in_features) -> y (N, out_features); W (in_features, out_features),
    b (out_features,). W is stored input-major, the same layout as a Flax ``Linear``
    kernel, so weights move between frameworks without a transpose.
    """

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
    """Row-wise softmax: logits (N, C) -> probabilities (N, C).

    Shifted by the row maximum so large logits do not overflow.
    """

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
    """Mean negative log-likelihood of integer labels under given probabilities.

    Shapes: p (N, C), y (N,) int -> scalar loss. Probabilities are floored at the
    dtype's smallest normal number so that a saturated softmax gives a large,
    finite loss instead of inf.
    """

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
