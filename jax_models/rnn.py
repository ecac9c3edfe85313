"""Recurrent classifiers for the palindrome task (Part 3), in Flax NNX.

Vanilla cell, as the assignment specifies: ``h_t = tanh(W [x_t ; h_{t-1}] + b)`` with ONE Linear
``(input_dim + hidden) -> hidden``, logits ``V h_T + c``; an LSTM (gates ``[i, f, g, o]``) for comparison.
In ``hidden_states``, ``W_x x_t`` (the kernel's input rows) is computed for all steps before the
scan, as it does not depend on the recurrence; ``__call__`` trains the vanilla cell on digits through
``jax_models/vanilla_rnn.py``'s hand-written backward pass. Init mimics PyTorch's ``nn.Linear``.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jax_models.init import torch_uniform
from jax_models.vanilla_rnn import vanilla_last_state

__all__ = ["torch_linear_init", "RNNClassifier", "grad_norms_wrt_hidden", "default_unroll", "resolve_unroll"]

Initializer = Callable[..., jax.Array]

# On an accelerator, sequences up to this length are unrolled completely; longer ones GPU_UNROLL steps
# per loop trip, so compile time stays bounded for long sequences while the trips stay few.
GPU_FULL_UNROLL_MAX = 64
GPU_UNROLL = 16


def default_unroll(steps: int, platform: str | None = None) -> int:
    """Time steps per ``lax.scan`` loop trip: 1 on CPU, where a trip is cheap and compile time stays
    flat in ``T``; on an accelerator, where each trip costs a host round trip, the unroll above."""
    platform = platform or jax.default_backend()
    if platform == "cpu":
        return 1
    return max(1, steps) if steps <= GPU_FULL_UNROLL_MAX else GPU_UNROLL


def resolve_unroll(unroll: int | bool | None, steps: int, platform: str | None = None) -> int:
    """``unroll`` as the steps per loop trip for a ``steps``-long sequence: ``None`` is the platform's
    default, ``True`` the whole sequence, ``False`` 1."""
    if unroll is None:
        return default_unroll(steps, platform)
    if isinstance(unroll, bool):
        return max(1, steps) if unroll else 1
    if unroll < 1:
        raise ValueError(f"unroll must be >= 1, True, False or None, got {unroll!r}")
    return int(unroll)


def torch_linear_init(fan_in: int) -> tuple[Initializer, Initializer]:
    """PyTorch ``nn.Linear`` default initialisers as ``(kernel_init, bias_init)`` (see ``torch_uniform``)."""
    init = torch_uniform(fan_in)
    return init, init


def _lstm_bias_init(fan_in: int, hidden: int) -> Initializer:
    """PyTorch-style bias with the forget gate at 1.0, to keep ``c`` flowing early (Jozefowicz et al., 2015)."""
    _, base = torch_linear_init(fan_in)

    def init(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
        return base(key, shape, dtype).at[hidden : 2 * hidden].set(1.0)

    return init


def _input_term(x: jax.Array, w_x: jax.Array, input_dim: int, dtype) -> jax.Array:
    """``W_x x_t`` for every step at once, ``[B, T, G*H]``. The bias stays in the step: hoisted, its
    gradient's summation order would change under vmap, so vmapped seeds would drift from single runs."""
    if jnp.issubdtype(x.dtype, jnp.integer):
        # A one-hot matmul rather than a row gather: its gradient is a matmul, not a contended
        # scatter-add. Out-of-range digits give NaN rather than one_hot's silent zero vector.
        valid = (x >= 0) & (x < input_dim)
        xw = jax.nn.one_hot(x, input_dim, dtype=dtype) @ w_x
        return jnp.where(valid[..., None], xw, jnp.nan)
    return jnp.einsum("btd,dk->btk", x.astype(dtype), w_x)


def _vanilla_step(w_h, bias):
    def step(h_prev, inp):
        xw_t, eps_t = inp
        h_t = jnp.tanh(xw_t + h_prev @ w_h + bias) + eps_t
        return h_t, h_t
    return step


def _lstm_step(w_h, bias, hidden: int):
    def step(carry, inp):
        h_prev, c_prev = carry
        xw_t, eps_t = inp
        z = xw_t + h_prev @ w_h + bias
        i = jax.nn.sigmoid(z[:, :hidden])
        f = jax.nn.sigmoid(z[:, hidden : 2 * hidden])
        g = jnp.tanh(z[:, 2 * hidden : 3 * hidden])
        o = jax.nn.sigmoid(z[:, 3 * hidden :])
        c_t = f * c_prev + i * g  # kept in the compute dtype, like h
        # The perturbation targets h_t only; c_t is left untouched.
        h_t = o * jnp.tanh(c_t) + eps_t
        return (h_t, c_t), h_t
    return step


@functools.partial(jax.jit, static_argnames=("cell", "input_dim", "dtype", "unroll"))
def _hidden_states(
    kernel: jax.Array,
    bias: jax.Array,
    x: jax.Array,
    h0: jax.Array | None,
    perturb: jax.Array | None,
    *,
    cell: str,
    input_dim: int,
    dtype,
    unroll: int | bool | None = None,
) -> jax.Array:
    """Forward recurrence -> ``[B, T, H]``; jitted at module level so eager calls reuse one compile per shape.

    ``kernel`` ``[input_dim + H, G*H]`` (G = 1 vanilla, 4 LSTM), rows ordered ``[x_t ; h_{t-1}]``;
    ``x`` int ``[B, T]`` or float ``[B, T, input_dim]``; ``h0`` ``[B, H]``, ``perturb`` ``[B, T, H]`` or None.
    """
    kernel = kernel.astype(dtype)
    bias = bias.astype(dtype)
    w_x, w_h = kernel[:input_dim], kernel[input_dim:]  # [D, G*H], [H, G*H]
    hidden = w_h.shape[0]

    xw = _input_term(x, w_x, input_dim, dtype)  # [B, T, G*H]
    batch, steps = xw.shape[0], xw.shape[1]

    h = jnp.zeros((batch, hidden), dtype) if h0 is None else jnp.asarray(h0).astype(dtype)
    if perturb is None:
        perturb = jnp.zeros((batch, steps, hidden), dtype)
    # scan iterates over the leading axis, so go time-major.
    xs = (jnp.swapaxes(xw, 0, 1), jnp.swapaxes(perturb.astype(dtype), 0, 1))
    unroll = resolve_unroll(unroll, steps)

    if cell == "vanilla":
        _, hs = jax.lax.scan(_vanilla_step(w_h, bias), h, xs, unroll=unroll)
    else:
        c = jnp.zeros((batch, hidden), dtype)
        _, hs = jax.lax.scan(_lstm_step(w_h, bias, hidden), (h, c), xs, unroll=unroll)
    return jnp.swapaxes(hs, 0, 1)


class RNNClassifier(nnx.Module):
    """Many-to-one classifier from ``h_T``. ``dtype`` is the compute dtype (parameters stay float32);
    ``unroll`` as in ``resolve_unroll``, changing results only by float rounding."""

    # XLA:CPU's YNNPACK dot fusions run the recurrence's small matmuls ([B, H] x [H, H], one per step)
    # slower than XLA's own dots; a CPU program that trains this model compiles without them
    # (train/backends/jax_backend.model_compiler_options). Results change by rounding only.
    XLA_CPU_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}

    def __init__(
        self,
        *,
        input_dim: int = 10,
        hidden: int = 128,
        num_classes: int = 10,
        cell: str = "vanilla",
        dtype=jnp.float32,
        unroll: int | bool | None = None,
        rngs: nnx.Rngs,
    ):
        if cell not in ("vanilla", "lstm"):
            raise ValueError(f"cell must be 'vanilla' or 'lstm', got {cell!r}")
        self.input_dim = input_dim
        self.hidden = hidden
        self.num_classes = num_classes
        self.cell_type = cell
        self.dtype = dtype
        resolve_unroll(unroll, 1)  # reject a bad value now, not at the first call
        self.unroll = unroll

        fan_in = input_dim + hidden
        gates = 1 if cell == "vanilla" else 4
        kernel_init, bias_init = torch_linear_init(fan_in)
        if cell == "lstm":
            bias_init = _lstm_bias_init(fan_in, hidden)
        # Kernel rows [0, input_dim) act on x_t, rows [input_dim, fan_in) on
        # h_{t-1}, matching the concatenation order [x_t ; h_{t-1}].
        self.cell = nnx.Linear(
            fan_in, gates * hidden, kernel_init=kernel_init, bias_init=bias_init,
            param_dtype=jnp.float32, rngs=rngs,
        )
        out_kernel_init, out_bias_init = torch_linear_init(hidden)
        self.out = nnx.Linear(
            hidden, num_classes, kernel_init=out_kernel_init, bias_init=out_bias_init,
            dtype=dtype, param_dtype=jnp.float32, rngs=rngs,
        )

    def hidden_states(
        self,
        x: jax.Array,
        h0: jax.Array | None = None,
        *,
        perturb: jax.Array | None = None,
    ) -> jax.Array:
        """``h_1 .. h_T`` as ``[B, T, hidden]`` from int digits ``[B, T]`` or float ``[B, T, input_dim]``.

        ``perturb`` ``[B, T, hidden]`` is added to each ``h_t`` before it feeds step ``t+1``, so the
        gradient w.r.t. a zero ``perturb[:, t]`` is the total derivative ``dL/dh_t``.
        """
        x = jnp.asarray(x)
        if jnp.issubdtype(x.dtype, jnp.integer):
            if x.ndim != 2:
                raise ValueError(f"integer input must be [B, T], got shape {x.shape}")
        elif x.ndim != 3 or x.shape[-1] != self.input_dim:
            raise ValueError(f"float input must be [B, T, {self.input_dim}], got shape {x.shape}")
        return _hidden_states(
            self.cell.kernel[...], self.cell.bias[...], x, h0, perturb,
            cell=self.cell_type, input_dim=self.input_dim, dtype=self.dtype, unroll=self.unroll,
        )

    def logits_from_last(self, h_last: jax.Array) -> jax.Array:
        """``[B, hidden]`` -> logits ``[B, num_classes]``, at least float32 so a bf16 model's loss is full precision."""
        return self.out(h_last).astype(jnp.promote_types(self.dtype, jnp.float32))

    def last_state(self, x: jax.Array) -> jax.Array:
        """``h_T`` ``[B, hidden]``: the vanilla cell on digits by its hand-written backward pass
        (``jax_models/vanilla_rnn.py``), else the last of ``hidden_states``."""
        x = jnp.asarray(x)
        if self.cell_type == "vanilla" and jnp.issubdtype(x.dtype, jnp.integer) and x.ndim == 2:
            return vanilla_last_state(self.cell.kernel[...], self.cell.bias[...], x, input_dim=self.input_dim,
                                      dtype=self.dtype, unroll=resolve_unroll(self.unroll, x.shape[1]))
        return self.hidden_states(x)[:, -1]

    def __call__(self, x: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None) -> jax.Array:
        """Logits ``[B, num_classes]``; ``train``/``rngs`` are ignored, kept for the shared trainer interface."""
        del train, rngs
        return self.logits_from_last(self.last_state(x))


@nnx.jit(static_argnames=("reduction",))
def grad_norms_wrt_hidden(model: RNNClassifier, x: jax.Array, y: jax.Array, reduction: str = "mean") -> jax.Array:
    """``mean_b ||dL/dh_t[b]||_2`` -> ``[T]`` (entry ``t`` is ``h_{t+1}``), the total derivative via ``perturb``.

    ``reduction="mean"`` matches PyTorch's ``loss.backward()`` with ``retain_grad``; ``"sum"`` gives
    per-example gradients that do not shrink with the batch size.
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    x = jnp.asarray(x)
    batch, steps = x.shape[0], x.shape[1]
    # At least float32 so a bf16 model's gradient is returned in full precision.
    eps = jnp.zeros((batch, steps, model.hidden), jnp.promote_types(model.dtype, jnp.float32))

    def loss_fn(eps):
        h_last = model.hidden_states(x, perturb=eps)[:, -1]
        losses = optax.softmax_cross_entropy_with_integer_labels(model.logits_from_last(h_last), y)
        return losses.mean() if reduction == "mean" else losses.sum()

    grads = jax.grad(loss_fn)(eps)  # [B, T, H]
    return jnp.linalg.norm(grads, axis=-1).mean(axis=0)
