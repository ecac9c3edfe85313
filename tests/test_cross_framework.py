"""JAX vs PyTorch vs NumPy on the same initial weights and batches: the same numbers, step by step.

torch is imported unconditionally: the dev extra installs it (pinned in CI), so a missing torch
fails this file instead of skipping it.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from flax import nnx

from data.toy import make_toy_data
from jax_models.cnn import CNN
from jax_models.mlp import MLP as JaxMLP
from jax_models.rnn import RNNClassifier, grad_norms_wrt_hidden
from numpy_mlp import MLP as NumpyMLP
from numpy_mlp.optim import AdamW
from train import torch_models as tm, torch_weights
from train.backends import JaxBackend, NumpyBackend, batch_stream
from train.experiments import cifar, mlp_toy, rnn
from train.torch_backend import TorchBackend, adamw, rmsprop_steplr

CPU = [jax.devices("cpu")[0]]


def to_float64(model):
    graphdef, state = nnx.split(model)
    return nnx.merge(graphdef, jax.tree.map(lambda a: a.astype(jnp.float64), state))


def trained_jax_model(backend):
    st = backend.host_state()
    return nnx.merge(backend.graphdef, st.params, st.model_state)


def torch_twin(net, jax_model, make_opt, arrays, preprocess=lambda x: x, **kw):
    torch_weights.load_from_jax(net.double(), jax_model)
    return TorchBackend(net, make_opt, preprocess, arrays, seed=0, dtype=torch.float64, device="cpu", threads=1, **kw)


def test_numpy_adamw_matches_optax_float64():
    rng = np.random.default_rng(0)
    params = {"W": rng.normal(size=(5, 3)), "b": rng.normal(size=3)}
    mine, opt = AdamW(3e-2, weight_decay=0.01), optax.adamw(3e-2, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.01)
    with jax.enable_x64(True):
        ref = {k: jnp.asarray(v) for k, v in params.items()}
        state = opt.init(ref)
        for _ in range(25):
            grads = {k: rng.normal(size=v.shape) for k, v in params.items()}
            mine.step([params], [grads])
            updates, state = opt.update({k: jnp.asarray(g) for k, g in grads.items()}, state, ref)
            ref = optax.apply_updates(ref, updates)
    for k in params:
        np.testing.assert_allclose(params[k], np.asarray(ref[k]), rtol=0, atol=1e-13)
    assert np.abs(params["W"] - np.asarray(ref["W"])).max() < 1e-13


def test_toy_mlp_numpy_jax_torch_float64():
    cfg = mlp_toy.ToyConfig(framework="all", samples=100, steps=24, batch_size=10, dtype="float64", lr=0.1, devices=1)
    data = make_toy_data("moons", n_samples=cfg.samples, noise=None, test_fraction=0.2, seed=0)
    with jax.enable_x64(True):
        backends = mlp_toy.build_backends(cfg, data)
        assert list(backends) == ["numpy", "jax", "torch"]
        idx = batch_stream(len(data.train_y), cfg.batch_size, cfg.steps, cfg.seed)
        losses = {fw: b.train(idx)["loss"] for fw, b in backends.items()}
        jm = trained_jax_model(backends["jax"])
    assert np.abs(losses["jax"] - losses["numpy"]).max() < 1e-10
    assert np.abs(losses["jax"] - losses["torch"]).max() < 1e-10
    assert losses["jax"][-1] < losses["jax"][0] - 0.01  # it learned: the agreement is not of untouched weights
    assert max(torch_weights.max_abs_diff(backends["torch"].model, jm).values()) < 1e-10
    for (w, b), lin in zip(backends["numpy"].model.get_weights(), jm.linears):
        assert np.abs(w - np.asarray(lin.kernel[...])).max() < 1e-10 and np.abs(b - np.asarray(lin.bias[...])).max() < 1e-10


def test_cifar_mlp_plain_numpy_jax_torch_float64():
    cfg = cifar.mlp_config(hidden="16,8", lr=1e-3)
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 256, (40, 32, 32, 3)).astype(np.uint8), rng.integers(0, 10, 40).astype(np.int32)
    arrays = {"train_x": x, "train_y": y, "test_x": x[:10], "test_y": y[:10]}
    idx = batch_stream(40, 8, 20, 0)
    with jax.enable_x64(True):
        jm = to_float64(cifar._build_mlp(cfg, dtype=jnp.float64, axis_name=None, rngs=nnx.Rngs(0)))
        nm = NumpyMLP(3072, cfg.hidden, 10, dtype=np.float64)
        nm.set_weights([(np.asarray(lin.kernel[...]), np.asarray(lin.bias[...])) for lin in jm.linears])
        tb = torch_twin(tm.MLP(3072, (16, 8), 10), jm, adamw(cfg.lr, cfg.weight_decay), arrays,
                        preprocess=lambda t: t.double() / 255)
        nb = NumpyBackend(nm, arrays, optimizer=AdamW(cfg.lr, weight_decay=cfg.weight_decay),
                          preprocess=lambda a: a.reshape(len(a), -1).astype(np.float64) / 255)
        jb = JaxBackend(jm, cifar.make_optimizer(cfg), lambda a: a.astype(jnp.float64) / 255, arrays, seed=0, devices=CPU)
        losses = {"jax": jb.train(idx)["loss"], "torch": tb.train(idx)["loss"], "numpy": nb.train(idx)["loss"]}
        jm = trained_jax_model(jb)
    assert np.abs(losses["jax"] - losses["torch"]).max() < 1e-10
    assert np.abs(losses["jax"] - losses["numpy"]).max() < 1e-10
    assert losses["jax"][-4:].mean() < losses["jax"][:4].mean() - 0.05
    assert max(torch_weights.max_abs_diff(tb.model, jm).values()) < 1e-10
    for (w, b), lin in zip(nm.get_weights(), jm.linears):
        assert np.abs(w - np.asarray(lin.kernel[...])).max() < 1e-10 and np.abs(b - np.asarray(lin.bias[...])).max() < 1e-10


@pytest.mark.parametrize("cell", ["vanilla", "lstm"])
def test_rnn_jax_torch_float64(cell):
    # StepLR halving every epoch of 5 steps and a clip that acts: every piece of the optimizer is exercised.
    cfg = rnn.RNNConfig(input_length=5, cell=cell, hidden=8, lr=1e-2, lr_step=1, lr_gamma=0.5, clip_norm=0.3)
    rng = np.random.default_rng(2)
    x, y = rng.integers(0, 10, (40, 5)).astype(np.int32), rng.integers(0, 10, 40).astype(np.int32)
    arrays = {"train_x": x, "train_y": y, "test_x": x[:8], "test_y": y[:8]}
    idx = batch_stream(40, 8, 20, 0)
    with jax.enable_x64(True):
        jm = to_float64(RNNClassifier(hidden=8, cell=cell, dtype=jnp.float64, rngs=nnx.Rngs(0)))
        net = tm.LSTMClassifier(10, 8, 10) if cell == "lstm" else tm.VanillaRNN(10, 8, 10)
        tb = torch_twin(net, jm, rmsprop_steplr(cfg.lr, cfg.lr_step, cfg.lr_gamma), arrays,
                        preprocess=lambda t: torch.nn.functional.one_hot(t.long(), 10).double(),
                        steps_per_epoch=5, clip_norm=cfg.clip_norm)
        jb = JaxBackend(jm, rnn.make_optimizer(cfg, 5), lambda a: a, arrays, seed=0, devices=CPU)
        jl, tl = jb.train(idx), tb.train(idx)["loss"]
        jm = trained_jax_model(jb)
        jax_grads = np.asarray(grad_norms_wrt_hidden(jm, x[:8], y[:8]))
    assert (jl["grad_norm"] > cfg.clip_norm).any()
    assert np.abs(jl["loss"] - tl).max() < 1e-10
    assert max(torch_weights.max_abs_diff(tb.model, jm).values()) < 1e-10
    np.testing.assert_allclose(tb.grad_norms(x[:8], y[:8]), jax_grads, rtol=1e-9)


# The seed's five blocks (conv + batch norm + ReLU, each block ending in the 3x3/2 max pool) at 1/64
# of the width, on 32x32 images: the last block still runs at 2x2, as the seed's does.
NARROW = ((4,), (8,), (8, 8), (8, 8), (8, 8))
NARROW_CONVS = [c for block in NARROW for c in block]
MEAN, STD = np.float32([0.5, 0.45, 0.4]), np.float32([0.25, 0.24, 0.26])


def _draw(path, leaf, rng):
    """A weight or statistic of the right scale: kernels U(+-1/sqrt(fan_in)), scales and variances U(0.5, 1.5)."""
    name = jax.tree_util.keystr(path)
    if "kernel" in name:
        return rng.uniform(-1, 1, leaf.shape) / np.sqrt(np.prod(leaf.shape[:-1]))
    return rng.uniform(0.5, 1.5, leaf.shape) if "var" in name or "scale" in name else rng.uniform(-0.3, 0.3, leaf.shape)


def narrow_cnn(dtype):
    """The narrow JAX CNN with weights and batch statistics drawn by NumPy, in the parameters' dtype.

    Any weights serve (torch gets them converted); JAX's initialisers would compile a random-bits
    program per weight shape, the bulk of this test's cost. Non-trivial running statistics make
    the eval-mode comparison check their conversion too.
    """
    graphdef, state = nnx.split(nnx.eval_shape(lambda: CNN(blocks=NARROW, dtype=dtype, rngs=nnx.Rngs(0))))
    rng = np.random.default_rng(4)
    wdtype = jnp.float64 if dtype == jnp.float64 else jnp.float32
    return nnx.merge(graphdef, jax.tree_util.tree_map_with_path(lambda p, s: jnp.asarray(_draw(p, s, rng), wdtype),
                                                                 state))


def cnn_twins(dtype, lr: float):
    """(JAX backend, torch backend) on the same narrow CNN, images, AdamW and normalisation."""
    rng = np.random.default_rng(3)
    x, y = rng.integers(0, 256, (4, 32, 32, 3)).astype(np.uint8), rng.integers(0, 10, 4).astype(np.int32)
    arrays = {"train_x": x, "train_y": y, "test_x": x, "test_y": y}
    cfg = cifar.cnn_config(lr=lr)
    jm = narrow_cnn(dtype)
    tdtype = torch.float64 if dtype == jnp.float64 else torch.float32
    net = tm.CNN(flax_bn=True, blocks=NARROW).to(tdtype)
    torch_weights.load_from_jax(net, jm)
    if dtype == jnp.float64:  # the experiment normalises in float32; here the inputs are exact too
        m, s = torch.tensor(MEAN, dtype=tdtype).view(1, 3, 1, 1), torch.tensor(STD, dtype=tdtype).view(1, 3, 1, 1)
        t_pre, j_pre = (lambda t: (t.double() / 255 - m) / s), (lambda a: (a.astype(jnp.float64) / 255 - MEAN) / STD)
    else:  # the experiment's own float32 normalisation on both sides
        m, inv = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(1.0 / STD).view(1, 3, 1, 1)
        t_pre, j_pre = (lambda t: (t.float() * (1.0 / 255.0) - m) * inv), cifar.make_preprocess(MEAN, STD)
    tb = TorchBackend(net, adamw(cfg.lr, cfg.weight_decay), t_pre, arrays, seed=0, nchw=True, dtype=tdtype,
                      device="cpu", threads=1)
    jb = JaxBackend(jm, cifar.make_optimizer(cfg), j_pre, arrays, seed=0, devices=CPU, fuse=False)
    return jb, tb


def conv_biases(model) -> list[np.ndarray]:
    if isinstance(model, torch.nn.Module):
        return [m.bias.detach().double().numpy().copy() for m in model.features if isinstance(m, torch.nn.Conv2d)]
    return [np.asarray(layer.conv.bias[...], np.float64) for block in model.blocks for layer in block]


def train_cnn_twins(jb, tb, idx):
    """Both CNNs on the same batches, a step at a time -> (JAX losses, torch losses, |torch - JAX| per weight,
    the conv biases' |torch - JAX|).

    A convolution's bias feeds batch norm, which subtracts the batch mean: its gradient is exactly
    zero, so what each framework computes is rounding noise (~1e-9 in float32, ~1e-15 in float64),
    which AdamW divides by that noise's own running RMS (+ eps 1e-8): in float32, steps of ~lr in
    a direction of each framework's own. Those biases are reported apart: they do not change the
    training-mode output. The running means average the conv output
    *with* its bias, so their difference is taken net of the biases' share: the exponential average
    (momentum 0.1) of each step's bias difference.
    """
    jl, tl, share = [], [], [0.0] * len(NARROW_CONVS)
    for k in range(len(idx)):
        db = [t - j for t, j in zip(conv_biases(tb.model), conv_biases(trained_jax_model(jb)))]
        share = [0.9 * s + 0.1 * d for s, d in zip(share, db)]  # step k's forward runs with these biases
        jl.append(jb.train(idx[k:k + 1])["loss"][0])
        tl.append(tb.train(idx[k:k + 1])["loss"][0])
    diffs = {name: t.detach().double().numpy() - a.astype(np.float64)
             for name, t, a in torch_weights.pairs(tb.model, trained_jax_model(jb))}
    noise = max(float(np.abs(diffs.pop(f"conv{i}.bias")).max()) for i in range(len(NARROW_CONVS)))
    for i, s in enumerate(share):
        diffs[f"bn{i}.running_mean"] -= s
    return np.array(jl), np.array(tl), {k: float(np.abs(v).max()) for k, v in diffs.items()}, noise


def test_cnn_jax_torch_float64_with_batch_norm():
    with jax.enable_x64(True):
        jb, tb = cnn_twins(jnp.float64, lr=1e-3)
        jl, tl, diffs, noise = train_cnn_twins(jb, tb, batch_stream(4, 4, 20, 0))
    assert jl[-1] < jl[0] - 0.1
    assert np.abs(jl - tl).max() < 1e-10
    # Every weight and running statistic; no eval-mode loss here: JAX sums it in float32 for uint8 inputs.
    assert max(diffs.values()) < 1e-10, max(diffs, key=diffs.get)
    assert noise < 20 * 1e-3 * 1e-6  # the biases' noise: ~1e-15 gradients over eps 1e-8, lr 1e-3, 20 steps


def test_cnn_jax_torch_float32_with_batch_norm():
    """The seed's precision and optimizer (AdamW, lr 1e-4): the issue's 1e-4 after 5 steps.

    Measured: losses 3e-6 apart, weights and running statistics 5e-7, eval-mode loss 1e-5 (the
    conv biases' drift moves the eval-mode output, which subtracts the running mean from conv + bias).
    """
    lr = 1e-4
    jb, tb = cnn_twins(jnp.float32, lr=lr)
    jl, tl, diffs, noise = train_cnn_twins(jb, tb, batch_stream(4, 4, 5, 0))
    je, te = jb.evaluate()["test"]["loss"], tb.evaluate()["test"]["loss"]
    assert jl[-1] < jl[0] - 0.1
    assert np.abs(jl - tl).max() < 1e-4
    assert max(diffs.values()) < 1e-5, max(diffs, key=diffs.get)  # tighter than the issue's: ~20x the rounding
    assert noise < 2 * 5 * 2 * lr  # the biases' noise: AdamW's steps on noise are up to ~2 lr in each framework
    assert abs(je - te) < 1e-4
