"""The CNN's CPU formulations (``conv_impl="im2col"``: patches times the kernel, a scatter-free max
pool; ``mixed``: that pool, and per layer XLA's convolution or im2col's) compute what XLA's
convolution and reduce_window compute, gradients and AdamW training included."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from tolerances import FLOOR_MULTIPLE, U32, nudge, sum_rel_error
from jax_models.cnn import CNN, conv3x3_im2col, max_pool_3x3_s2, resolve_conv_impl

HIGHEST = jax.default_matmul_precision("highest")   # a GPU's TF32 would swamp fp32 rounding


def _xla_conv(x, k):
    return jax.lax.conv_general_dilated(x, k, (1, 1), ((1, 1), (1, 1)),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


@pytest.mark.parametrize("hw,c,o", [(8, 3, 5), (2, 16, 8), (4, 7, 3)])
def test_im2col_convolution_and_its_gradients_equal_xlas(hw, c, o):
    rng = np.random.default_rng(hw * 100 + c)
    x = jnp.asarray(rng.normal(size=(2, hw, hw, c)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(3, 3, c, o)), jnp.float32)
    g = jnp.asarray(rng.normal(size=(2, hw, hw, o)), jnp.float32)
    with HIGHEST:
        y_ref, y = _xla_conv(x, k), conv3x3_im2col(x, k)
        # Each output is a 9c-term dot product: either order's error is at most gamma_9c times the sum
        # of the terms' magnitudes, which is the convolution of |x| and |k|.
        bound = 2 * sum_rel_error(9 * c, U32) * _xla_conv(jnp.abs(x), jnp.abs(k))
        assert bool(jnp.all(jnp.abs(y - y_ref) <= bound))
        gx_ref, gk_ref = jax.grad(lambda x, k: jnp.sum(_xla_conv(x, k) * g), (0, 1))(x, k)
        gx, gk = jax.grad(lambda x, k: jnp.sum(conv3x3_im2col(x, k) * g), (0, 1))(x, k)
    # dx sums 9 o terms, dk sums N H W terms, each of magnitude |g| |k| or |x| |g|.
    bx = 2 * sum_rel_error(9 * o, U32) * 9 * o * float(jnp.max(jnp.abs(g))) * float(jnp.max(jnp.abs(k)))
    bk = 2 * sum_rel_error(2 * hw * hw, U32) * 2 * hw * hw * float(jnp.max(jnp.abs(x)) * jnp.max(jnp.abs(g)))
    assert float(jnp.max(jnp.abs(gx - gx_ref))) <= bx
    assert float(jnp.max(jnp.abs(gk - gk_ref))) <= bk


@pytest.mark.parametrize("hw", [2, 4, 7])
def test_scatter_free_max_pool_routes_ties_as_select_and_scatter(hw):
    rng = np.random.default_rng(hw)
    # Small integers: windows hold many equal maxima, as ReLU's zeros do; integer cotangents keep
    # every gradient sum exact, so the two must agree bit for bit.
    x = jnp.asarray(rng.integers(0, 3, size=(2, hw, hw, 3)), jnp.float32)
    g = jnp.asarray(rng.integers(-4, 5, size=max_pool_3x3_s2(x).shape), jnp.float32)
    assert bool(jnp.array_equal(max_pool_3x3_s2(x, "im2col"), max_pool_3x3_s2(x, "xla")))
    grads = [jax.grad(lambda x, impl=impl: jnp.sum(max_pool_3x3_s2(x, impl) * g))(x) for impl in ("xla", "im2col")]
    assert bool(jnp.array_equal(*grads))


def _train(impl, x, y, steps=3):
    """Losses and parameters of a narrow CNN over ``steps`` AdamW steps: its first layer (8x8, 384
    pixels) is one ``mixed`` runs as XLA's convolution, its later ones (4x4, 2x2) as im2col's."""
    model = CNN(blocks=((4,), (8,), (8,)), conv_impl=impl, rngs=nnx.Rngs(0))
    gd, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.adamw(1e-3, weight_decay=0.01)

    def loss(p, rest):
        m = nnx.merge(gd, p, rest, copy=True)
        logits = m(x, train=True)
        ce = jnp.mean(jax.nn.logsumexp(logits, -1) - jnp.take_along_axis(logits, y[:, None], -1)[:, 0])
        return ce, nnx.state(m, nnx.BatchStat)

    @jax.jit
    def step(p, rest, opt):
        (ce, stats), g = jax.value_and_grad(loss, has_aux=True)(p, rest)
        upd, opt = tx.update(g, opt, p)
        return optax.apply_updates(p, upd), nnx.merge_state(rest, stats), opt, ce

    opt, losses = tx.init(params), []
    with HIGHEST:
        for _ in range(steps):
            params, rest, opt, ce = step(params, rest, opt)
            losses.append(float(ce))
    return np.array(losses), [np.asarray(v) for v in jax.tree.leaves(params)]


@pytest.mark.parametrize("impl", ["im2col", "mixed"])
def test_the_narrow_cnn_trains_the_same_either_way(impl):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 8, 8, 3)).astype(np.float32)
    y = jnp.asarray(rng.integers(0, 10, size=6))
    (l_ref, p_ref), (l, p) = _train("xla", jnp.asarray(x), y), _train(impl, jnp.asarray(x), y)
    # The noise floor: XLA's own convolution on the input moved by one ulp, trained the same steps.
    l_n, p_n = _train("xla", jnp.asarray(nudge(x, rng)), y)
    floor = max(float(np.max(np.abs(a - b))) for a, b in zip(p_ref, p_n))
    gap = max(float(np.max(np.abs(a - b))) for a, b in zip(p_ref, p))
    assert floor > 0 and gap <= FLOOR_MULTIPLE * floor
    loss_floor = max(float(np.max(np.abs(l_n - l_ref))), U32 * float(np.max(np.abs(l_ref))))
    assert float(np.max(np.abs(l - l_ref))) <= FLOOR_MULTIPLE * loss_floor


def test_auto_is_mixed_on_cpu_and_xla_elsewhere():
    assert resolve_conv_impl("auto", "cpu") == "mixed" and resolve_conv_impl("auto", "gpu") == "xla"
    assert resolve_conv_impl("xla", "cpu") == "xla"
    with pytest.raises(ValueError, match="conv_impl"):
        resolve_conv_impl("winograd")
