"""Flax NNX multilayer perceptrons: the toy MLP (2-20-2) and the CIFAR MLP with its improved variant."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax
from flax import nnx

from jax_models.init import torch_uniform


def _linear(n_in: int, n_out: int, dtype, param_dtype, rngs: nnx.Rngs) -> nnx.Linear:
    init = torch_uniform(n_in)
    return nnx.Linear(n_in, n_out, kernel_init=init, bias_init=init, dtype=dtype,
                      param_dtype=param_dtype, rngs=rngs)


class MLP(nnx.Module):
    """Linear -> [BatchNorm] -> ReLU -> [Dropout] -> ... -> Linear (logits).

    Shapes: x (N, ...) is flattened to (N, n_inputs) -> logits (N, n_classes).
    With ``batch_norm=False`` and ``dropout=0`` this is exactly the original's
    MLP; the "improved" CIFAR variant turns both on. ``axis_name`` makes batch
    norm average its statistics across a device axis (pmap, shard_map), so N
    devices normalise with the statistics of the whole global batch, and makes
    each device drop out its rows of the global batch's dropout mask.
    """

    def __init__(self, n_inputs: int, hidden: Sequence[int], n_classes: int, *,
                 batch_norm: bool = False, dropout: float = 0.0, dtype=jnp.float32,
                 param_dtype=jnp.float32, axis_name: str | None = None, rngs: nnx.Rngs) -> None:
        if isinstance(hidden, str):  # "20" would read as layers of 2 and 0 units
            raise TypeError(f"hidden must be a sequence of layer sizes, got the string {hidden!r}")
        sizes = (n_inputs, *(int(h) for h in hidden), n_classes)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout rate must be in [0, 1), got {dropout}")
        self.dtype = dtype
        self.linears = nnx.List([_linear(a, b, dtype, param_dtype, rngs) for a, b in zip(sizes[:-1], sizes[1:])])
        self.norms = nnx.List([
            nnx.BatchNorm(s, momentum=0.9, epsilon=1e-5, dtype=dtype, param_dtype=param_dtype,
                          axis_name=axis_name, rngs=rngs)
            for s in sizes[1:-1]] if batch_norm else [])
        self.dropout = nnx.Dropout(dropout) if dropout > 0 else None
        self.axis_name = axis_name

    def __call__(self, x: jax.Array, *, train: bool = False, rngs: jax.Array | None = None) -> jax.Array:
        x = x.reshape(x.shape[0], -1).astype(self.dtype)
        n_hidden = len(self.linears) - 1
        for i in range(n_hidden):
            x = self.linears[i](x)
            if self.norms:
                x = self.norms[i](x, use_running_average=not train)
            x = jax.nn.relu(x)
            if self.dropout is not None and train:
                x = self._dropout(x, jax.random.fold_in(rngs, i))
        return self.linears[-1](x)

    def _dropout(self, x: jax.Array, key: jax.Array) -> jax.Array:
        """Dropout as one device draws it for the whole batch, also on N devices: each draws the global
        batch's mask (N times the random bits) and keeps its own rows, so N devices train what one does."""
        if self.axis_name is None:
            return self.dropout(x, deterministic=False, rngs=key)
        b, shards = x.shape[0], lax.axis_size(self.axis_name)
        keep = self.dropout(jnp.ones((shards * b, *x.shape[1:]), x.dtype), deterministic=False, rngs=key) != 0
        keep = lax.dynamic_slice_in_dim(keep, lax.axis_index(self.axis_name) * b, b)
        return lax.select(keep, x / (1.0 - self.dropout.rate), jnp.zeros_like(x))  # nnx.Dropout's own formula


def set_mlp_weights(model: MLP, weights: Sequence[tuple]) -> None:
    """Load [(W (in, out), b (out,)), ...] (e.g. from the NumPy MLP) into ``model``'s Linears."""
    if len(weights) != len(model.linears):
        raise ValueError(f"expected {len(model.linears)} (W, b) pairs, got {len(weights)}")
    for lin, (w, b) in zip(model.linears, weights):
        # Replace the whole value (not ``[...] =``), so this also fills a model built with nnx.eval_shape.
        lin.kernel.set_value(jnp.asarray(w, dtype=lin.kernel.dtype))
        lin.bias.set_value(jnp.asarray(b, dtype=lin.bias.dtype))
