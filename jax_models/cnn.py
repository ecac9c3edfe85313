"""The seed's CIFAR-10 CNN in Flax NNX, NHWC.

Five blocks; every convolution is 3x3 (padding 1) + batch norm + ReLU; every
block ends with a 3x3, stride 2, padding 1 max pool that halves the spatial
size: 32 -> 16 -> 8 -> 4 -> 2 -> 1; then Linear(512 -> 10).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jax_models.init import torch_uniform

# Output channels of each block's convolutions, from the spec.
BLOCKS: tuple[tuple[int, ...], ...] = ((64,), (128,), (256, 256), (512, 512), (512, 512))


class ConvBNReLU(nnx.Module):
    def __init__(self, c_in: int, c_out: int, *, dtype, axis_name, rngs: nnx.Rngs) -> None:
        init = torch_uniform(c_in * 9)
        self.conv = nnx.Conv(c_in, c_out, (3, 3), padding=1, kernel_init=init, bias_init=init,
                             dtype=dtype, param_dtype=jnp.float32, rngs=rngs)
        # PyTorch's BatchNorm2d defaults: momentum 0.1 (0.9 in Flax's convention), eps 1e-5.
        self.bn = nnx.BatchNorm(c_out, momentum=0.9, epsilon=1e-5, dtype=dtype,
                                param_dtype=jnp.float32, axis_name=axis_name, rngs=rngs)

    def __call__(self, x, *, train: bool):
        return jax.nn.relu(self.bn(self.conv(x), use_running_average=not train))


def max_pool_3x3_s2(x: jax.Array) -> jax.Array:
    """3x3 max pool, stride 2, padding 1 (padded with -inf, as PyTorch does): (N, H, W, C) -> (N, H/2, W/2, C)."""
    return nnx.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))


class CNN(nnx.Module):
    """x (N, 32, 32, 3) -> logits (N, num_classes)."""

    def __init__(self, *, in_channels: int = 3, num_classes: int = 10, dtype=jnp.float32,
                 axis_name: str | None = None, blocks: tuple[tuple[int, ...], ...] = BLOCKS,
                 rngs: nnx.Rngs) -> None:
        """``blocks``: each block's convolution widths; the seed's by default, narrower ones for cheap tests."""
        self.dtype = dtype
        layers, c = [], in_channels
        for block in blocks:
            convs = []
            for c_out in block:
                convs.append(ConvBNReLU(c, c_out, dtype=dtype, axis_name=axis_name, rngs=rngs))
                c = c_out
            layers.append(nnx.List(convs))
        self.blocks = nnx.List(layers)
        init = torch_uniform(c)
        self.head = nnx.Linear(c, num_classes, kernel_init=init, bias_init=init, dtype=dtype,
                               param_dtype=jnp.float32, rngs=rngs)

    def features(self, x: jax.Array, *, train: bool = False) -> list[jax.Array]:
        """Activation after each block: [(N,16,16,64), (N,8,8,128), (N,4,4,256), (N,2,2,512), (N,1,1,512)]."""
        x = x.astype(self.dtype)
        out = []
        for block in self.blocks:
            for layer in block:
                x = layer(x, train=train)
            x = max_pool_3x3_s2(x)
            out.append(x)
        return out

    def __call__(self, x: jax.Array, *, train: bool = False, rngs: jax.Array | None = None) -> jax.Array:
        x = self.features(x, train=train)[-1]
        return self.head(x.reshape(x.shape[0], -1))
