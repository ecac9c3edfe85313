"""NumPy and JAX agree: same weights and batch give the same loss and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jax_models.mlp import MLP as JaxMLP, set_mlp_weights
from numpy_mlp import MLP as NumpyMLP, parse_hidden

from tolerances import U32, U64, run_bound


def jax_loss_and_grads(model, x, y):
    graphdef, params = nnx.split(model, nnx.Param)

    def loss_fn(p):
        logits = nnx.merge(graphdef, p)(x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    loss, grads = jax.value_and_grad(loss_fn)(params)
    return float(loss), [(np.asarray(lin["kernel"][...]), np.asarray(lin["bias"][...])) for lin in grads["linears"].values()]


@pytest.mark.parametrize("hidden,n_in,n_out", [("20", 2, 2), ("16,8", 5, 3)])
def test_float64_loss_and_grads_match(hidden, n_in, n_out):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, n_in))
    y = rng.integers(0, n_out, size=30).astype(np.int32)
    np_model = NumpyMLP(n_in, hidden, n_out, seed=5, dtype=np.float64)
    np_loss, _ = np_model.loss_and_grads(x, y)
    np_grads = [(m.grads["W"], m.grads["b"]) for m in np_model.linears]
    with jax.enable_x64(True):
        jmodel = JaxMLP(n_in, parse_hidden(hidden), n_out, dtype=jnp.float64, param_dtype=jnp.float64, rngs=nnx.Rngs(0))
        set_mlp_weights(jmodel, np_model.get_weights())
        j_loss, j_grads = jax_loss_and_grads(jmodel, jnp.asarray(x), jnp.asarray(y))
    # One forward and backward pass: sums over at most the 30 examples, chained through the widest layer
    # (20 units): n = 30 x 20 terms of the loss's or each gradient's own scale.
    n = 30 * 20
    assert abs(np_loss - j_loss) <= run_bound(U64, n, scale=abs(np_loss))
    for (nw, nb), (jw, jb) in zip(np_grads, j_grads):
        assert jw.dtype == np.float64
        np.testing.assert_allclose(jw, nw, rtol=0, atol=run_bound(U64, n, scale=np.abs(nw).max()))
        np.testing.assert_allclose(jb, nb, rtol=0, atol=run_bound(U64, n, scale=np.abs(nb).max()))


def test_float32_forward_matches():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 2)).astype(np.float32)
    np_model = NumpyMLP(2, "20", 2, seed=0)
    jmodel = JaxMLP(2, (20,), 2, rngs=nnx.Rngs(0))
    set_mlp_weights(jmodel, np_model.get_weights())
    logits = np_model.logits(x)
    # float32, sums of at most 20 terms (the hidden layer) of the logits' scale.
    np.testing.assert_allclose(np.asarray(jmodel(jnp.asarray(x))), logits, rtol=0,
                               atol=run_bound(U32, 20, scale=np.abs(logits).max()))
