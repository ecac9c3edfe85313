"""Initialisers that match PyTorch's defaults, since the original was written in PyTorch."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def torch_uniform(fan_in: int):
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): nn.Linear's and nn.Conv2d's default for weight and bias.

    PyTorch draws the weight with ``kaiming_uniform_(a=sqrt(5))``: bound = gain * sqrt(3 / fan_in) with
    gain = sqrt(2 / (1 + a^2)) = sqrt(1/3), i.e. 1 / sqrt(fan_in); the bias uses the same bound.
    (Flax's own defaults are lecun-normal kernels and zero biases.)
    """
    if fan_in < 1:
        raise ValueError(f"fan_in must be >= 1, got {fan_in}")
    bound = 1.0 / float(fan_in) ** 0.5

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init
