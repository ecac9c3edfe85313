"""Initialisers that match PyTorch's defaults, since the original was written in PyTorch."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp



def torch_uniform(fan_in: int):
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): nn.Linear's and nn.Conv2d's default for weight and bias
    (Flax's own defaults are lecun-normal kernels and zero biases)."""
    if fan_in < 1:
        raise ValueError(f"fan_in must be >= 1, got {fan_in}")
    bound = 1.0 / math.sqrt(fan_in)  # correctly rounded, as the NumPy baseline's np.sqrt

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init
