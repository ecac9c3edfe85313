"""The vanilla cell's hand-written backward pass (jax_models/vanilla_rnn.py), which the classifier's
``__call__`` trains with, against JAX's autodiff through ``hidden_states`` and finite differences."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from tolerances import FLOOR_MULTIPLE, nudge
from jax_models.rnn import RNNClassifier

B, H = 6, 128


def _data(steps, seed=0, batch=B):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 10, (batch, steps)).astype(np.int32), rng.integers(0, 10, batch).astype(np.int32)


def _grads(model, x, y, autodiff: bool):
    """Parameter gradients of the mean cross-entropy: by ``__call__`` (the hand-written backward) or by
    autodiff through the general recurrence."""
    def loss(m):
        logits = m.logits_from_last(m.hidden_states(x)[:, -1]) if autodiff else m(x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return nnx.state(nnx.grad(loss)(model), nnx.Param)


def _leaves(state):
    return {jax.tree_util.keystr(p): np.asarray(v) for p, v in jax.tree_util.tree_leaves_with_path(state)}


@pytest.mark.parametrize("steps,unroll", [(1, None), (2, None), (9, None), (9, 4)])
def test_backward_equals_autodiff_to_rounding(steps, unroll):
    """Same gradient, sums in another order: within FLOOR_MULTIPLE times what one ulp of every weight
    does to autodiff's gradient (tolerances.py). ``unroll=4`` leaves a remainder trip for T = 9."""
    x, y = _data(steps, seed=steps)
    model = RNNClassifier(hidden=H, unroll=unroll, rngs=nnx.Rngs(steps))
    mine, ref = _leaves(_grads(model, x, y, False)), _leaves(_grads(model, x, y, True))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    rng = np.random.default_rng(0)
    nudged = nnx.merge(graphdef, jax.tree.map(lambda a: jnp.asarray(nudge(np.asarray(a), rng)), params), rest)
    floor = _leaves(_grads(nudged, x, y, True))
    for k in ref:
        noise = np.abs(floor[k] - ref[k]).max()
        assert noise > 0 or "out" in k, k  # the cell's floor is measured, not zero
        assert np.abs(mine[k] - ref[k]).max() <= FLOOR_MULTIPLE * noise, k


def test_backward_matches_finite_differences_float64():
    model = RNNClassifier(hidden=H, dtype=jnp.float64, rngs=nnx.Rngs(3))
    with jax.enable_x64(True):
        x, y = _data(7, seed=3)
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)

        def loss(p):
            logits = nnx.merge(graphdef, p, rest)(x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        grad = jax.grad(loss)(params)
        rng = np.random.default_rng(4)
        for _ in range(3):  # random directions through every parameter
            v = jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape)), params)
            delta = 1e-6
            step = lambda s: jax.tree.map(lambda a, d: a + s * delta * d, params, v)  # noqa: E731
            fd = (float(loss(step(1))) - float(loss(step(-1)))) / (2 * delta)
            exact = sum(float(jnp.vdot(g, d)) for g, d in zip(jax.tree.leaves(grad), jax.tree.leaves(v)))
            # Central differences in float64 at delta 1e-6: truncation ~1e-13, rounding u |L| / delta ~ 3e-10
            # relative to a directional derivative of order 1e-2..1; a wrong gradient errs by O(1).
            np.testing.assert_allclose(exact, fd, rtol=1e-6)


def test_out_of_range_digits_give_nan_not_a_zero_input():
    model = RNNClassifier(hidden=H, rngs=nnx.Rngs(5))
    x, _ = _data(4, seed=5)
    bad = x.copy()
    bad[0, 1], bad[1, 2] = 10, -1
    out = np.asarray(model(bad))
    assert np.isnan(out[:2]).all() and np.isfinite(out[2:]).all()
    np.testing.assert_array_equal(out[2:], np.asarray(model(x))[2:])  # rows are independent


def test_bfloat16_gradients_track_float32():
    x, y = _data(9, seed=6)
    g32 = _leaves(_grads(RNNClassifier(hidden=H, rngs=nnx.Rngs(6)), x, y, False))
    g16 = _leaves(_grads(RNNClassifier(hidden=H, dtype=jnp.bfloat16, rngs=nnx.Rngs(6)), x, y, False))
    ad16 = _leaves(_grads(RNNClassifier(hidden=H, dtype=jnp.bfloat16, rngs=nnx.Rngs(6)), x, y, True))
    for k in g32:
        assert g16[k].dtype == np.float32  # parameters, and so their gradients, stay float32
        # bfloat16's error (u = 2^-9, over sums of up to B*T terms) is what both bfloat16 backward passes
        # show against float32; the hand-written one is no further off than autodiff's, give or take 2x.
        scale = np.abs(g32[k]).max()
        assert np.abs(g16[k] - g32[k]).max() <= 2 * max(np.abs(ad16[k] - g32[k]).max(), 2.0 ** -9 * scale), k
