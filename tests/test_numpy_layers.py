"""Every hand-written backward against central finite differences, in float64."""

import numpy as np
import pytest

from numpy_mlp import MLP, CrossEntropy, Linear, ReLU, SoftMax, parse_hidden

from tolerances import U64, run_bound

# Central differences with step h = 1e-5 in float64 err by the truncation h^2 |f'''| / 6 (1.7e-11 |f'''|) and
# the rounding u |f| / h (1.1e-11 |f|): ~1e-10 of these O(1) losses and gradients. 1e-7 leaves a factor 1e3
# for third derivatives up to ~1e3 (the softmax of logits scaled by 3); a wrong backward errs by O(1).
TOL = 1e-7


def rel_error(a, b):
    """Norm-wise relative error: elementwise ratios blow up on entries near zero, where
    central differences have an absolute floor of about eps * |f| / h."""
    return np.linalg.norm(a - b) / max(1e-12, np.linalg.norm(a) + np.linalg.norm(b))


def numeric_grad(f, x, h=1e-5):
    """Central differences of the scalar f() with respect to array x (perturbed in place)."""
    g = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + h
        fp = f()
        x[i] = old - h
        fm = f()
        x[i] = old
        g[i] = (fp - fm) / (2 * h)
    return g


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def test_linear_backward(rng):
    layer = Linear(5, 4, rng=rng, dtype=np.float64)
    x = rng.normal(size=(6, 5))
    dout = rng.normal(size=(6, 4))
    f = lambda: float((layer.forward(x) * dout).sum())  # noqa: E731
    layer.forward(x)
    dx = layer.backward(dout)
    assert rel_error(dx, numeric_grad(f, x)) < TOL
    assert rel_error(layer.grads["W"], numeric_grad(f, layer.params["W"])) < TOL
    assert rel_error(layer.grads["b"], numeric_grad(f, layer.params["b"])) < TOL


def test_relu_backward(rng):
    layer = ReLU()
    x = rng.normal(size=(7, 3))
    x[np.abs(x) < 1e-3] = 0.5  # keep away from the kink, where the derivative is undefined
    dout = rng.normal(size=x.shape)
    f = lambda: float((layer.forward(x) * dout).sum())  # noqa: E731
    layer.forward(x)
    assert rel_error(layer.backward(dout), numeric_grad(f, x)) < TOL


def test_softmax_backward(rng):
    layer = SoftMax()
    z = rng.normal(size=(4, 5)) * 3
    dp = rng.normal(size=z.shape)
    f = lambda: float((layer.forward(z) * dp).sum())  # noqa: E731
    layer.forward(z)
    assert rel_error(layer.backward(dp), numeric_grad(f, z)) < TOL
    # Five probabilities, each an exp and a division (a few u), summed: well under 10 x 5 u.
    np.testing.assert_allclose(layer.forward(z).sum(1), 1.0, rtol=run_bound(U64, n=5))


def test_softmax_large_logits_are_finite():
    p = SoftMax().forward(np.array([[1000.0, 0.0], [-1000.0, 1000.0]]))
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p, [[1, 0], [0, 1]], atol=1e-12)  # exp(-1000) underflows to 0: exact but for it


def test_cross_entropy_backward(rng):
    layer = CrossEntropy()
    p = rng.uniform(0.05, 1.0, size=(6, 4))
    p /= p.sum(1, keepdims=True)
    y = rng.integers(0, 4, size=6)
    f = lambda: float(layer.forward(p, y))  # noqa: E731
    layer.forward(p, y)
    assert rel_error(layer.backward(1.0), numeric_grad(f, p)) < TOL
    # The same six logs (a few u each) and their mean: within 10 x 6 u = 6.7e-15.
    assert f() == pytest.approx(-np.log(p[np.arange(6), y]).mean(), rel=run_bound(U64, n=6))


@pytest.mark.parametrize("hidden", ["20", "8, 6"])
def test_mlp_parameter_gradients(rng, hidden):
    model = MLP(3, hidden, 4, seed=3, dtype=np.float64)
    x = rng.normal(size=(5, 3))
    y = rng.integers(0, 4, size=5)
    model.loss_and_grads(x, y)
    analytic = [(m.grads["W"].copy(), m.grads["b"].copy()) for m in model.linears]
    f = lambda: model.loss(x, y)[0]  # noqa: E731
    for m, (gw, gb) in zip(model.linears, analytic):
        assert rel_error(gw, numeric_grad(f, m.params["W"])) < TOL
        assert rel_error(gb, numeric_grad(f, m.params["b"])) < TOL


def test_sgd_step_moves_against_gradient(rng):
    model = MLP(2, "20", 2, seed=0, dtype=np.float64)
    x, y = rng.normal(size=(30, 2)), rng.integers(0, 2, size=30)
    before = model.get_weights()
    model.loss_and_grads(x, y)
    grads = [(m.grads["W"].copy(), m.grads["b"].copy()) for m in model.linears]
    model.sgd_step(x, y, lr=0.1)
    for (w0, b0), (gw, gb), (w1, b1) in zip(before, grads, model.get_weights()):
        # One product and one difference, each rounded (2u), perhaps in another order; rtol ~1e3 u: a wrong
        # step (lr, sign) errs by O(1).
        np.testing.assert_allclose(w1, w0 - 0.1 * gw, rtol=1e-13)
        np.testing.assert_allclose(b1, b0 - 0.1 * gb, rtol=1e-13)


def test_float32_stays_float32(rng):
    model = MLP(2, "20", 2, seed=0, dtype=np.float32)
    x, y = rng.normal(size=(30, 2)).astype(np.float32), rng.integers(0, 2, size=30)
    model.sgd_step(x, y, lr=0.01)
    assert all(w.dtype == np.float32 and b.dtype == np.float32 for w, b in model.get_weights())
    assert model.logits(x).dtype == np.float32


def test_shapes_and_init_bounds():
    model = MLP(2, "20", 2, seed=0)
    (w1, b1), (w2, b2) = model.get_weights()
    assert w1.shape == (2, 20) and b1.shape == (20,) and w2.shape == (20, 2) and b2.shape == (2,)
    assert np.abs(w1).max() <= 1 / np.sqrt(2) and np.abs(w2).max() <= 1 / np.sqrt(20)
    assert model.logits(np.zeros((30, 2))).shape == (30, 2)
    assert model.param_count == 2 * 20 + 20 + 20 * 2 + 2


def test_parse_hidden():
    assert parse_hidden("20") == (20,)
    assert parse_hidden("1024, 512, 256, 256, 128") == (1024, 512, 256, 256, 128)
    assert parse_hidden("") == ()
    for bad in ("a", "20,-1", "0"):
        with pytest.raises(ValueError):
            parse_hidden(bad)
