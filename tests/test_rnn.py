"""Tests for the recurrent classifier (jax_models/rnn.py).

The references below are deliberately written the naive way: a Python loop
over time applying the *concatenated* form ``W [x_t ; h_{t-1}] + b`` of the
spec, whereas the model hoists the input projection out of a ``lax.scan``.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from tolerances import U32, U64, U_BF16, run_bound, sum_rel_error
from jax_models.rnn import (
    GPU_FULL_UNROLL_MAX,
    GPU_UNROLL,
    RNNClassifier,
    default_unroll,
    grad_norms_wrt_hidden,
    resolve_unroll,
    torch_linear_init,
)

B, T, H = 5, 9, 128  # H = the default size, so parameter-init compiles are shared


def _digits(batch=B, steps=T, seed=0):
    return np.random.default_rng(seed).integers(0, 10, size=(batch, steps)).astype(np.int32)


def _params(model):
    return (np.asarray(model.cell.kernel[...]), np.asarray(model.cell.bias[...]),
            np.asarray(model.out.kernel[...]), np.asarray(model.out.bias[...]))


def _sum_bound(model, u=U32, steps=T, margin=1.0):
    """The worst rounding gap of two evaluations of the recurrence whose sums run in different orders.

    Each step's pre-activation sums the H + 1 terms of W [x_t ; h_{t-1}] + b (x_t one-hot, |h| <= 1),
    whose magnitudes add up to at most the largest column sum of |W| plus |b|; tanh and the gates are
    1-Lipschitz. The output layer is one step more, of H terms.
    """
    w, b, v, c = _params(model)
    scale = max(float(np.abs(w).sum(0).max() + np.abs(b).max()), float(np.abs(v).sum(0).max() + np.abs(c).max()))
    return run_bound(u, n=H + 1, steps=steps + 1, scale=scale, margin=margin)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _step(xp, cell, w, b, x_t, h, c):
    """One cell update in the concatenated form, for ``xp`` in {numpy, jax.numpy}."""
    z = xp.concatenate([x_t, h], axis=-1) @ w + b
    if cell == "vanilla":
        return xp.tanh(z), c
    n = h.shape[-1]
    sig = _sigmoid if xp is np else jax.nn.sigmoid
    i, f, g, o = sig(z[:, :n]), sig(z[:, n:2 * n]), xp.tanh(z[:, 2 * n:3 * n]), sig(z[:, 3 * n:])
    c = f * c + i * g
    return o * xp.tanh(c), c


def _loop_hidden_states(xp, cell, w, b, x_onehot, h0=None):
    batch, steps, _ = x_onehot.shape
    n = w.shape[0] - x_onehot.shape[-1]
    h = xp.zeros((batch, n), x_onehot.dtype) if h0 is None else h0
    c = xp.zeros((batch, n), x_onehot.dtype)
    hs = []
    for t in range(steps):
        h, c = _step(xp, cell, w, b, x_onehot[:, t], h, c)
        hs.append(h)
    return xp.stack(hs, axis=1)


@pytest.mark.parametrize("cell", ["vanilla", "lstm"])
def test_scan_matches_python_loop_float32(cell):
    model = RNNClassifier(hidden=H, cell=cell, rngs=nnx.Rngs(0))
    x = _digits()
    w, b, v, c = (jnp.asarray(p) for p in _params(model))
    # jit the reference only to compile it once instead of op by op; it is
    # still an unrolled Python loop.
    ref = jax.jit(lambda w, b, xo: _loop_hidden_states(jnp, cell, w, b, xo))
    ref_hs = ref(w, b, jax.nn.one_hot(x, 10, dtype=jnp.float32))
    hs = model.hidden_states(x)
    assert hs.shape == (B, T, H) and hs.dtype == jnp.float32
    bound = _sum_bound(model)
    np.testing.assert_allclose(np.asarray(hs), np.asarray(ref_hs), atol=bound, rtol=0)
    np.testing.assert_allclose(np.asarray(model(x)), np.asarray(ref_hs[:, -1] @ v + c), atol=bound, rtol=0)


@pytest.mark.parametrize("cell", ["vanilla", "lstm"])
def test_float64_matches_numpy_loop(cell):
    # Built outside the x64 context: parameters are float32 either way, and
    # this reuses the (slow to compile) float32 initialisers.
    model = RNNClassifier(hidden=H, cell=cell, dtype=jnp.float64, rngs=nnx.Rngs(1))
    with jax.enable_x64(True):
        x = _digits(seed=1)
        w, b, v, c = (p.astype(np.float64) for p in _params(model))
        h0 = np.random.default_rng(3).normal(size=(B, H)) * 0.5
        ref_hs = _loop_hidden_states(np, cell, w, b, np.eye(10)[x], h0=h0)
        hs = np.asarray(model.hidden_states(x, h0=h0))
        assert hs.dtype == np.float64
        bound = _sum_bound(model, u=U64)
        np.testing.assert_allclose(hs, ref_hs, atol=bound, rtol=0)
        logits = np.asarray(model.logits_from_last(jnp.asarray(hs[:, -1])))
        assert logits.dtype == np.float64
        np.testing.assert_allclose(logits, ref_hs[:, -1] @ v + c, atol=bound, rtol=0)


@pytest.mark.parametrize("cell", ["vanilla", "lstm"])
def test_int_digits_equal_one_hot_floats(cell):
    model = RNNClassifier(hidden=H, cell=cell, rngs=nnx.Rngs(2))
    x = _digits(seed=2)
    onehot = jax.nn.one_hot(x, 10, dtype=jnp.float32)
    # A gather of W's rows against a product with exact zeros: the same terms, perhaps summed in another order.
    np.testing.assert_allclose(np.asarray(model(x)), np.asarray(model(onehot)), atol=_sum_bound(model), rtol=0)
    # uint8 digits, as stored by the data set, are accepted too.
    np.testing.assert_allclose(np.asarray(model(x.astype(np.uint8))), np.asarray(model(x)), atol=0, rtol=0)


@pytest.mark.parametrize("cell", ["vanilla", "lstm"])
def test_output_shape_and_last_hidden_consistency(cell):
    model = RNNClassifier(cell=cell, rngs=nnx.Rngs(3))  # all defaults
    x = _digits(seed=3)
    logits = model(x, train=True, rngs=nnx.Rngs(9))
    assert logits.shape == (B, 10) and logits.dtype == jnp.float32
    hs = model.hidden_states(x)
    assert hs.shape == (B, T, 128)
    np.testing.assert_array_equal(np.asarray(model.logits_from_last(hs[:, -1])), np.asarray(logits))
    # A zero perturbation leaves the forward pass unchanged.
    np.testing.assert_array_equal(np.asarray(model.hidden_states(x, perturb=jnp.zeros_like(hs))),
                                  np.asarray(hs))


def test_torch_init_bounds_and_lstm_forget_bias():
    kernel_init, _ = torch_linear_init(138)
    w = np.asarray(kernel_init(jax.random.key(0), (138, 128)))
    bound = 1 / math.sqrt(138)
    assert bound * 0.95 < np.abs(w).max() <= bound
    assert abs(w.std() - bound / math.sqrt(3)) < 0.02 * bound  # std of U(-b, b)

    model = RNNClassifier(cell="vanilla", rngs=nnx.Rngs(0))
    kernel, bias, out_kernel, _ = _params(model)
    assert kernel.shape == (138, 128) and out_kernel.shape == (128, 10)
    assert np.abs(bias).max() <= bound and np.abs(out_kernel).max() <= 1 / math.sqrt(128)

    lstm = RNNClassifier(cell="lstm", rngs=nnx.Rngs(0))
    bias = np.asarray(lstm.cell.bias[...])
    assert lstm.cell.kernel[...].shape == (138, 512)
    np.testing.assert_array_equal(bias[128:256], 1.0)
    assert np.abs(np.delete(bias, np.s_[128:256])).max() <= bound


def test_bfloat16_compute():
    x = _digits()
    m32 = RNNClassifier(hidden=H, rngs=nnx.Rngs(4))
    m16 = RNNClassifier(hidden=H, dtype=jnp.bfloat16, rngs=nnx.Rngs(4))
    assert m16.cell.kernel[...].dtype == jnp.float32  # params stay float32
    assert m16.hidden_states(x).dtype == jnp.bfloat16
    logits = m16(x)
    assert logits.dtype == jnp.float32
    # Statistical, not a worst case (which is O(1) at bfloat16's u = 2^-9 over 129-term sums): the roundings'
    # random signs keep the logits within ~25 u of float32's; what is checked is that bfloat16 computes them.
    gap = np.abs(np.asarray(logits) - np.asarray(m32(x)))
    assert 0 < gap.max() <= 25 * U_BF16


def _ce(logits, y):
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


@pytest.mark.parametrize("cell", ["vanilla", "lstm"])
def test_grad_norms_match_direct_gradients(cell):
    model = RNNClassifier(hidden=H, cell=cell, rngs=nnx.Rngs(5))
    x = _digits(seed=5)
    y = jnp.asarray(np.random.default_rng(6).integers(0, 10, size=B))
    gn = np.asarray(grad_norms_wrt_hidden(model, x, y))
    assert gn.shape == (T,) and gn.dtype == np.float32
    assert np.all(np.isfinite(gn)) and np.all(gn > 0)

    # Last step: differentiate the output layer's loss directly w.r.t. h_T.
    hs = model.hidden_states(x)
    g_last = jax.grad(lambda h: _ce(model.logits_from_last(h), y))(hs[:, -1])
    # The same gradient of the output layer both ways: a 10-term product sum, a norm over H, a mean over B,
    # each side with its own rounding.
    np.testing.assert_allclose(gn[-1], float(jnp.linalg.norm(g_last, axis=-1).mean()),
                               rtol=2 * sum_rel_error(10 + H + B, U32))

    # Every other step: run the remaining steps from h_t with a Python loop
    # (independent code path) and differentiate w.r.t. h_t.
    steps_checked = (0, T // 2, T - 2)

    @jax.jit  # compiles the unrolled loops once rather than op by op
    def reference_norms(w, b, v, c, onehot, hs):
        cs = None
        if cell == "lstm":
            # The LSTM also carries c_t, recomputed here and held constant:
            # dL/dh_t treats c_t as a separate state.
            cs, h, c_t = [], jnp.zeros((B, H)), jnp.zeros((B, H))
            for t in range(T):
                h, c_t = _step(jnp, cell, w, b, onehot[:, t], h, c_t)
                cs.append(c_t)

        def loss_from(h_t, t):
            h, c_t = h_t, (cs[t] if cs is not None else None)
            for s in range(t + 1, T):
                h, c_t = _step(jnp, cell, w, b, onehot[:, s], h, c_t)
            return _ce(h @ v + c, y)

        return [jnp.linalg.norm(jax.grad(loss_from)(hs[:, t], t), axis=-1).mean() for t in steps_checked]

    params = (jnp.asarray(p) for p in _params(model))
    ref = reference_norms(*params, jax.nn.one_hot(x, 10, dtype=jnp.float32), hs)
    for t, r in zip(steps_checked, ref):
        np.testing.assert_allclose(gn[t], float(r), rtol=_sum_bound(model, margin=2))  # both sides' backward

    if cell == "vanilla":  # (one cell suffices; each variant costs a compile)
        # reduction="sum" differentiates per-example losses: exactly B times larger.
        # Exactly in real numbers; in float32 the 1/B scaling (not a power of two) changes every rounding after.
        np.testing.assert_allclose(np.asarray(grad_norms_wrt_hidden(model, x, y, reduction="sum")),
                                   B * gn, rtol=_sum_bound(model, margin=2))


def test_grad_norms_finite_difference_float64():
    model = RNNClassifier(hidden=H, dtype=jnp.float64, rngs=nnx.Rngs(7))
    with jax.enable_x64(True):
        x = _digits(batch=1, seed=7)
        y = jnp.asarray([3])
        gn = np.asarray(grad_norms_wrt_hidden(model, x, y))
        t = 2

        assert gn.dtype == np.float64

        # Batched over the H central-difference directions: row k perturbs
        # coordinate k of h_t of the single example (B=1).
        @jax.jit
        def losses(eps):  # [H, T, H] -> [H]
            hs = model.hidden_states(jnp.repeat(x, H, axis=0), perturb=eps)
            logits = model.logits_from_last(hs[:, -1])
            return optax.softmax_cross_entropy_with_integer_labels(logits, jnp.repeat(y, H))

        delta = 1e-6
        e = np.zeros((H, T, H))
        e[np.arange(H), t, np.arange(H)] = delta
        grad = (np.asarray(losses(jnp.asarray(e))) - np.asarray(losses(jnp.asarray(-e)))) / (2 * delta)
        # Central differences, delta 1e-6, float64: truncation delta^2 |f'''| / 6 ~ 1e-13 and rounding
        # u |f| / delta ~ 3e-10 per component; 1e-6 leaves 1e3 for larger third derivatives; a wrong
        # gradient errs by O(1).
        np.testing.assert_allclose(gn[t], np.linalg.norm(grad), rtol=1e-6)


def test_vanilla_gradients_vanish_at_init():
    model = RNNClassifier(rngs=nnx.Rngs(8))
    x = _digits(batch=16, steps=30, seed=8)
    y = jnp.asarray(x[:, 0])
    gn = np.asarray(grad_norms_wrt_hidden(model, x, y))
    assert gn[0] < 1e-3 * gn[-1]  # a property, not a tolerance: the gradient shrinks by orders over 30 steps


def test_jit_any_batch_size():
    model = RNNClassifier(hidden=H, rngs=nnx.Rngs(9))

    @nnx.jit
    def forward(m, x):
        return m(x)

    graphdef, state = nnx.split(model)

    @jax.jit
    def forward_pure(state, x):
        return nnx.merge(graphdef, state)(x)

    for batch in (1, 33):
        x = _digits(batch=batch, seed=batch)
        eager = np.asarray(model(x))
        assert forward(model, x).shape == (batch, 10)
        bound = _sum_bound(model)  # one program against op-by-op: at most its sums reordered
        np.testing.assert_allclose(np.asarray(forward(model, x)), eager, atol=bound)
        if batch > 1:  # (one size suffices for the split/merge route)
            np.testing.assert_allclose(np.asarray(forward_pure(state, x)), eager, atol=bound)


def test_invalid_arguments():
    with pytest.raises(ValueError):
        RNNClassifier(cell="gru", rngs=nnx.Rngs(0))
    model = RNNClassifier(hidden=H, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError):
        model(jnp.zeros((2, 3, 7)))  # wrong feature size
    with pytest.raises(ValueError):
        model(jnp.zeros((2, 3, 10), jnp.int32))  # int input must be [B, T]


@pytest.mark.parametrize("cell", ["vanilla", "lstm"])
def test_unrolled_scan_equals_loop_and_python_reference(cell):
    # unroll=4 does not divide T=9: two unrolled trips plus a remainder of one step.
    x = _digits(seed=10)
    models = {u: RNNClassifier(hidden=H, cell=cell, unroll=u, rngs=nnx.Rngs(10)) for u in (1, 4, True)}
    w, b, _, _ = (jnp.asarray(p) for p in _params(models[1]))
    ref = jax.jit(lambda w, b, xo: _loop_hidden_states(jnp, cell, w, b, xo))(
        w, b, jax.nn.one_hot(x, 10, dtype=jnp.float32))
    hs = {u: np.asarray(m.hidden_states(x)) for u, m in models.items()}
    bound = _sum_bound(models[1])
    for u in (4, True):
        np.testing.assert_allclose(hs[u], hs[1], atol=bound, rtol=0)
    for u in hs:
        np.testing.assert_allclose(hs[u], np.asarray(ref), atol=bound, rtol=0)
    # Gradients flow through the unrolled scan the same way.
    y = jnp.asarray(np.random.default_rng(11).integers(0, 10, size=B))
    np.testing.assert_allclose(np.asarray(grad_norms_wrt_hidden(models[True], x, y)),
                               np.asarray(grad_norms_wrt_hidden(models[1], x, y)), rtol=_sum_bound(models[1], margin=2))


def test_unroll_removes_the_time_loop_from_the_program():
    x = jnp.asarray(_digits(seed=12))

    def program(unroll):
        m = RNNClassifier(hidden=H, unroll=unroll, rngs=nnx.Rngs(12))
        return jax.jit(lambda x: m.hidden_states(x)).lower(x).as_text()

    assert "while" in program(1) and "while" not in program(True)


def test_default_unroll_by_platform_and_resolution():
    assert default_unroll(15, "cpu") == 1 and default_unroll(300, "cpu") == 1
    assert default_unroll(15, "gpu") == 15 and default_unroll(GPU_FULL_UNROLL_MAX, "gpu") == GPU_FULL_UNROLL_MAX
    assert default_unroll(GPU_FULL_UNROLL_MAX + 1, "gpu") == GPU_UNROLL
    assert resolve_unroll(True, 9) == 9 and resolve_unroll(False, 9) == 1 and resolve_unroll(3, 9) == 3
    assert resolve_unroll(None, 9, "cpu") == 1
    with pytest.raises(ValueError):
        RNNClassifier(hidden=H, unroll=0, rngs=nnx.Rngs(0))
