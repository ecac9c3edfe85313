"""The vanilla cell's last hidden state from digit sequences, with a hand-written backward pass.

``h_t = tanh(W_x[x_t] + h_{t-1} W_h + b)`` from ``h_0 = 0``; the classifier needs ``h_T`` only. Its
autodiff through ``lax.scan`` saves four ``[T, B, H]`` residuals per step, back-propagates a
mostly-zero ``[T, B, H]`` cotangent of every state, and on XLA:CPU computes each step's
``h_{t-1}^T dz_t`` inside the time loop, behind the recurrence's own matmul. Here:

- forward: one matmul and one fused ``tanh`` per step; the digit's row of ``W_x`` is gathered
  inside the step (a one-hot product selects that row exactly, so the forward is the same);
  the states are the only residual;
- backward: the loop carries ``dL/dh_t`` and does one matmul per step, ``dz_t W_h^T``; the
  kernel's gradient is then two matmuls over all ``(t, b)`` at once, and the bias's a sum.

Results equal autodiff's to float rounding (the sums run in another order);
``tests/test_rnn.py`` checks both against each other and against finite differences.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["vanilla_last_state"]


def _digit_rows(w_x: jax.Array, x_t: jax.Array) -> jax.Array:
    """``one_hot(x_t) @ w_x`` as a row gather; an out-of-range digit gives a NaN row, not zeros."""
    n = w_x.shape[0]
    valid = (x_t >= 0) & (x_t < n)
    rows = jnp.take(w_x, jnp.clip(x_t, 0, n - 1).astype(jnp.int32), axis=0)
    return jnp.where(valid[:, None], rows, jnp.nan)


def _states(kernel: jax.Array, bias: jax.Array, x_tm: jax.Array, input_dim: int, unroll: int) -> jax.Array:
    """``h_1 .. h_T`` time-major ``[T, B, H]``."""
    w_x, w_h = kernel[:input_dim], kernel[input_dim:]

    def step(h, x_t):
        h = jnp.tanh(_digit_rows(w_x, x_t) + h @ w_h + bias)
        return h, h

    h0 = jnp.zeros((x_tm.shape[1], w_h.shape[0]), kernel.dtype)
    return lax.scan(step, h0, x_tm, unroll=unroll)[1]


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _last(kernel, bias, x_tm, input_dim, unroll):
    return _states(kernel, bias, x_tm, input_dim, unroll)[-1]


def _last_fwd(kernel, bias, x_tm, input_dim, unroll):
    hs = _states(kernel, bias, x_tm, input_dim, unroll)
    return hs[-1], (kernel, hs, x_tm)


def _last_bwd(input_dim, unroll, res, g):
    kernel, hs, x_tm = res
    w_h_t = kernel[input_dim:].T

    def step(dh, h_t):
        dz = dh * (1 - h_t * h_t)
        return dz @ w_h_t, dz

    # Steps T..2 in the loop; step 1's dz needs no dL/dh_0 (h_0 is a constant), so no matmul.
    dh1, dz_late = lax.scan(step, g.astype(hs.dtype), hs[1:], reverse=True, unroll=unroll)
    dz1 = dh1 * (1 - hs[0] * hs[0])
    flat = lambda a: a.reshape(a.shape[0] * a.shape[1], a.shape[2])  # noqa: E731
    contract = lambda a, b: lax.dot_general(a, b, (((0,), (0,)), ((), ())))  # noqa: E731 - a^T b
    # h_0 = 0, so W_h's gradient sums h_{t-1}^T dz_t over t >= 2 only.
    d_wh = contract(flat(hs[:-1]), flat(dz_late))
    one_hot = jax.nn.one_hot(x_tm, input_dim, dtype=hs.dtype)
    d_wx = contract(flat(one_hot[1:]), flat(dz_late)) + contract(one_hot[0], dz1)
    # The bias's sum as a matmul too: a reduction's order changes under vmap (seeds side by side), a matmul's does not.
    ones = lambda a: jnp.ones((a.shape[0],), a.dtype)  # noqa: E731
    d_bias = ones(flat(dz_late)) @ flat(dz_late) + ones(dz1) @ dz1
    return jnp.concatenate([d_wx, d_wh]).astype(kernel.dtype), d_bias.astype(hs.dtype), None


_last.defvjp(_last_fwd, _last_bwd)


@functools.partial(jax.jit, static_argnames=("input_dim", "dtype", "unroll"))
def vanilla_last_state(kernel: jax.Array, bias: jax.Array, x: jax.Array, *, input_dim: int, dtype,
                       unroll: int) -> jax.Array:
    """``h_T`` ``[B, H]`` for integer digits ``x`` ``[B, T]``; ``kernel`` ``[input_dim + H, H]`` (rows
    ``[x_t ; h_{t-1}]``), computed in ``dtype``; ``unroll`` steps per loop trip, forward and backward."""
    return _last(kernel.astype(dtype), bias.astype(dtype), jnp.swapaxes(x, 0, 1), input_dim, unroll)
