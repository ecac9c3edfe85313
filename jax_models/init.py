"""Initialisers that match PyTorch's defaults, since the original was written in PyTorch."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def torch_uniform(fan_in: int):
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): nn.Linear's and nn.Conv2d's default for weight and bias."""
    bound = 1.0 / float(fan_in) ** 0.5

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init
