"""Initialisers that match PyTorch's defaults, since the original was written in PyTorch."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from numpy_mlp.layers import torch_uniform_bound


def torch_uniform(fan_in: int):
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): nn.Linear's and nn.Conv2d's default for weight and bias
    (see ``numpy_mlp.layers.torch_uniform_bound``; Flax's own defaults are lecun-normal kernels and
    zero biases)."""
    bound = torch_uniform_bound(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init
