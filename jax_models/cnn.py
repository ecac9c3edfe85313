"""The seed's CIFAR-10 CNN in Flax NNX, NHWC.

Five blocks; every convolution is 3x3 (padding 1) + batch norm + ReLU; every
block ends with a 3x3, stride 2, padding 1 max pool that halves the spatial
size: 32 -> 16 -> 8 -> 4 -> 2 -> 1; then Linear(512 -> 10).

How a convolution and a max pool are computed (``conv_impl``) is a speed choice
only; every formulation computes the same function and the same gradients (up to
the order of its sums):

- ``xla``: ``lax.conv_general_dilated`` and ``lax.reduce_window`` (whose
  gradient is a select-and-scatter), what a GPU runs best;
- ``im2col``: the 3x3 patches gathered by a pad and 9 static slices (pure data
  movement, whose gradient is pads and adds) times the kernel as one matmul,
  and the max pool as a running maximum over strided views, rows then columns
  (no scatter in its gradient);
- ``mixed``: ``im2col``'s max pool, and per layer XLA's convolution where it
  is the faster (an image of at least 8x8 in a small batch) and ``im2col``'s
  elsewhere. XLA:CPU's convolution picks a pathological algorithm on small
  images (openxla/xla issue 34273) and a slow one for large batches; its
  matmuls are not slow. ``scripts/cnn_cpu_layers.py`` times each layer;
- ``auto``: ``mixed`` on a CPU, ``xla`` elsewhere (see :func:`resolve_conv_impl`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax

from jax_models.init import torch_uniform

# Output channels of each block's convolutions, from the spec.
BLOCKS: tuple[tuple[int, ...], ...] = ((64,), (128,), (256, 256), (512, 512), (512, 512))
CONV_IMPLS = ("auto", "xla", "im2col", "mixed")
# mixed: XLA's convolution for an image at least this wide in a batch of at most this many pixels (N*H*W).
XLA_CONV_MIN_SIDE, XLA_CONV_MAX_PIXELS = 8, 16384


def resolve_conv_impl(conv_impl: str, platform: str | None = None) -> str:
    """``auto`` -> ``mixed`` on a CPU (XLA:CPU's convolutions are the slow part of its step there),
    ``xla`` elsewhere; any other name as it is. ``platform``: JAX's default backend if None."""
    if conv_impl not in CONV_IMPLS:
        raise ValueError(f"conv_impl must be one of {', '.join(CONV_IMPLS)}, got {conv_impl!r}")
    if conv_impl != "auto":
        return conv_impl
    return "mixed" if (platform or jax.default_backend()) == "cpu" else "xla"


def conv3x3_im2col(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """A 3x3, stride 1, padding 1 convolution of x (N, H, W, C) with kernel (3, 3, C, O) as one matmul
    of the (N*H*W, 9*C) patches; the patch's (row, column, channel) order is the kernel's HWIO order."""
    n, h, w, c = x.shape
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    patches = jnp.concatenate([xp[:, i:i + h, j:j + w, :] for i in range(3) for j in range(3)], axis=-1)
    y = jnp.dot(patches.reshape(n * h * w, 9 * c), kernel.reshape(9 * c, -1))
    return y.reshape(n, h, w, -1)


class ConvBNReLU(nnx.Module):
    def __init__(self, c_in: int, c_out: int, *, dtype, axis_name, conv_impl: str = "xla",
                 rngs: nnx.Rngs) -> None:
        init = torch_uniform(c_in * 9)
        self.conv = nnx.Conv(c_in, c_out, (3, 3), padding=1, kernel_init=init, bias_init=init,
                             dtype=dtype, param_dtype=jnp.float32, rngs=rngs)
        # PyTorch's BatchNorm2d defaults: momentum 0.1 (0.9 in Flax's convention), eps 1e-5.
        self.bn = nnx.BatchNorm(c_out, momentum=0.9, epsilon=1e-5, dtype=dtype,
                                param_dtype=jnp.float32, axis_name=axis_name, rngs=rngs)
        self.conv_impl = conv_impl

    def _conv(self, x):
        n, h, w, _ = x.shape
        if self.conv_impl == "xla" or (self.conv_impl == "mixed" and min(h, w) >= XLA_CONV_MIN_SIDE
                                       and n * h * w <= XLA_CONV_MAX_PIXELS):
            return self.conv(x)
        dtype = self.conv.dtype
        y = conv3x3_im2col(x.astype(dtype), self.conv.kernel[...].astype(dtype))
        return y + self.conv.bias[...].astype(dtype)

    def __call__(self, x, *, train: bool):
        return jax.nn.relu(self.bn(self._conv(x), use_running_average=not train))


def max_pool_3x3_s2(x: jax.Array, conv_impl: str = "xla") -> jax.Array:
    """3x3 max pool, stride 2, padding 1 (padded with -inf, as PyTorch does): (N, H, W, C) -> (N, H/2, W/2, C).

    Other than ``xla``: the running maximum over the 3 strided column views, then over the 3 strided row
    views of that, a later view taken only where strictly greater. The element chosen is the first row
    holding the window's maximum and that row's first column holding it: the first maximum in row-major
    order, where select-and-scatter's ``>=`` (and PyTorch's scan) sends the gradient. Same values, same
    gradient, without a scatter."""
    if conv_impl == "xla":
        return nnx.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    _, h, w, _ = x.shape
    ho, wo = (h + 1) // 2, (w + 1) // 2
    x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-jnp.inf)
    for axis, n_out in ((2, wo), (1, ho)):
        out = None
        for k in range(3):
            view = lax.slice_in_dim(x, k, k + 2 * n_out - 1, stride=2, axis=axis)
            out = view if out is None else jnp.where(view > out, view, out)
        x = out
    return x


class CNN(nnx.Module):
    """x (N, 32, 32, 3) -> logits (N, num_classes)."""

    def __init__(self, *, in_channels: int = 3, num_classes: int = 10, dtype=jnp.float32,
                 axis_name: str | None = None, blocks: tuple[tuple[int, ...], ...] = BLOCKS,
                 conv_impl: str = "auto", platform: str | None = None, rngs: nnx.Rngs) -> None:
        """``blocks``: each block's convolution widths; the seed's by default, narrower ones for cheap tests.
        ``conv_impl``: how convolutions and pools are computed (module docstring), ``auto`` resolved for
        ``platform`` (JAX's default backend if None); the parameters are the same whichever it is."""
        self.dtype = dtype
        self.conv_impl = resolve_conv_impl(conv_impl, platform)
        layers, c = [], in_channels
        for block in blocks:
            convs = []
            for c_out in block:
                convs.append(ConvBNReLU(c, c_out, dtype=dtype, axis_name=axis_name, conv_impl=self.conv_impl,
                                        rngs=rngs))
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
            x = max_pool_3x3_s2(x, self.conv_impl)
            out.append(x)
        return out

    def __call__(self, x: jax.Array, *, train: bool = False, rngs: jax.Array | None = None) -> jax.Array:
        x = self.features(x, train=train)[-1]
        return self.head(x.reshape(x.shape[0], -1))
