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
from jax_models.rnn import RNNClassifier, grad_norms_wrt_hidden
from numpy_mlp import MLP as NumpyMLP
from numpy_mlp.optim import AdamW
from train.backends import torch_models as tm, torch_weights
from train.backends.jax_backend import JaxBackend
from train.backends.numpy_backend import NumpyBackend
from train.engine.schedule import batch_stream
from train.experiments import cifar, mlp_toy, rnn
from train.backends.torch_backend import TorchBackend, adamw, rmsprop_steplr

from tolerances import FLOOR_MULTIPLE, U32, U64, adam_drift_bound, nudge, run_bound, sum_rel_error

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


def numpy_jax_weight_gap(numpy_mlp, jax_mlp) -> float:
    """The largest |NumPy - JAX| over the two MLPs' kernels and biases."""
    return max(max(np.abs(w - np.asarray(lin.kernel[...])).max(), np.abs(b - np.asarray(lin.bias[...])).max())
               for (w, b), lin in zip(numpy_mlp.get_weights(), jax_mlp.linears, strict=True))


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
    # Elementwise arithmetic only: ~10 roundings an update, in each implementation's own order, on
    # parameters of magnitude <= max|p|.
    bound = run_bound(U64, n=10, steps=25, scale=max(np.abs(p).max() for p in params.values()))
    for k in params:
        np.testing.assert_allclose(params[k], np.asarray(ref[k]), rtol=0, atol=bound)


def test_toy_mlp_numpy_jax_torch_float64():
    cfg = mlp_toy.ToyConfig(framework="all", samples=100, steps=24, batch_size=10, dtype="float64", lr=0.1, devices=1)
    data = make_toy_data("moons", n_samples=cfg.samples, noise=None, test_fraction=0.2, seed=0)
    with jax.enable_x64(True):
        backends = mlp_toy.build_backends(cfg, data)
        assert list(backends) == ["numpy", "jax", "torch"]
        idx = batch_stream(len(data.train_y), cfg.batch_size, cfg.steps, cfg.seed)
        losses = {fw: b.train(idx)["loss"] for fw, b in backends.items()}
        jm = trained_jax_model(backends["jax"])
    bound = run_bound(U64, n=20, steps=cfg.steps)  # the widest sum: the 20 hidden units (the batch is 10)
    assert np.abs(losses["jax"] - losses["numpy"]).max() <= bound
    assert np.abs(losses["jax"] - losses["torch"]).max() <= bound
    assert losses["jax"][-1] < losses["jax"][0] - 0.01  # it learned: the agreement is not of untouched weights
    assert max(torch_weights.max_abs_diff(backends["torch"].model, jm).values()) <= bound
    assert numpy_jax_weight_gap(backends["numpy"].model, jm) <= bound


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
    bound = run_bound(U64, n=3072, steps=20)  # the widest sum: the 3072 inputs of the first layer
    assert np.abs(losses["jax"] - losses["torch"]).max() <= bound
    assert np.abs(losses["jax"] - losses["numpy"]).max() <= bound
    assert losses["jax"][-4:].mean() < losses["jax"][:4].mean() - 0.05
    assert max(torch_weights.max_abs_diff(tb.model, jm).values()) <= bound
    assert numpy_jax_weight_gap(nm, jm) <= bound


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
    # The widest sum: a weight's gradient over 8 sequences x 5 time steps.
    bound = run_bound(U64, n=8 * 5, steps=20)
    assert np.abs(jl["loss"] - tl).max() <= bound
    assert max(torch_weights.max_abs_diff(tb.model, jm).values()) <= bound
    np.testing.assert_allclose(tb.grad_norms(x[:8], y[:8]), jax_grads, rtol=run_bound(U64, n=8 * 5))


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


def narrow_cnn(dtype, nudge_seed: int | None = None):
    """The narrow JAX CNN with weights and batch statistics drawn by NumPy, in the parameters' dtype;
    with ``nudge_seed``, every one of them then moved one ulp (tolerances.nudge).

    Any weights serve (torch gets them converted); JAX's initialisers would compile a random-bits
    program per weight shape, the bulk of this test's cost. Non-trivial running statistics make
    the eval-mode comparison check their conversion too.
    """
    graphdef, state = nnx.split(nnx.eval_shape(lambda: CNN(blocks=NARROW, dtype=dtype, rngs=nnx.Rngs(0))))
    rng = np.random.default_rng(4)
    wdtype = np.float64 if dtype == jnp.float64 else np.float32
    drawn = jax.tree_util.tree_map_with_path(lambda p, s: _draw(p, s, rng).astype(wdtype), state)
    if nudge_seed is not None:
        nrng = np.random.default_rng(nudge_seed)
        drawn = jax.tree.map(lambda a: nudge(a, nrng), drawn)
    return nnx.merge(graphdef, jax.tree.map(jnp.asarray, drawn))


def cnn_twins(dtype, lr: float, nudge_seed: int | None = None):
    """(JAX backend, torch backend, torch backend from one-ulp-nudged weights) on the same narrow CNN, images,
    AdamW and normalisation."""
    rng = np.random.default_rng(3)
    x, y = rng.integers(0, 256, (4, 32, 32, 3)).astype(np.uint8), rng.integers(0, 10, 4).astype(np.int32)
    arrays = {"train_x": x, "train_y": y, "test_x": x, "test_y": y}
    cfg = cifar.cnn_config(lr=lr)
    tdtype = torch.float64 if dtype == jnp.float64 else torch.float32
    if dtype == jnp.float64:  # the experiment normalises in float32; here the inputs are exact too
        m, s = torch.tensor(MEAN, dtype=tdtype).view(1, 3, 1, 1), torch.tensor(STD, dtype=tdtype).view(1, 3, 1, 1)
        t_pre, j_pre = (lambda t: (t.double() / 255 - m) / s), (lambda a: (a.astype(jnp.float64) / 255 - MEAN) / STD)
    else:  # the experiment's own float32 normalisation on both sides
        m, inv = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(1.0 / STD).view(1, 3, 1, 1)
        t_pre, j_pre = (lambda t: (t.float() * (1.0 / 255.0) - m) * inv), cifar.make_preprocess(MEAN, STD)

    def torch_twin(jax_model):
        net = tm.CNN(flax_bn=True, blocks=NARROW).to(tdtype)
        torch_weights.load_from_jax(net, jax_model)
        return TorchBackend(net, adamw(cfg.lr, cfg.weight_decay), t_pre, arrays, seed=0, nchw=True, dtype=tdtype,
                            device="cpu", threads=1)

    jm = narrow_cnn(dtype)
    tb = torch_twin(jm)
    jb = JaxBackend(jm, cifar.make_optimizer(cfg), j_pre, arrays, seed=0, devices=CPU, fuse=False)
    return jb, tb, (None if nudge_seed is None else torch_twin(narrow_cnn(dtype, nudge_seed)))


def conv_biases(backend) -> list[np.ndarray]:
    """The pre-BN conv biases a backend's next step runs with."""
    if isinstance(backend, TorchBackend):
        return [m.bias.detach().double().numpy().copy() for m in backend.model.features if isinstance(m, torch.nn.Conv2d)]
    return [np.asarray(layer.conv.bias[...], np.float64) for block in trained_jax_model(backend).blocks for layer in block]


def train_stepwise(backends, idx):
    """The CNN backends on the same batches, a step at a time -> (losses [backend, step], for each backend the
    conv biases each step ran with)."""
    losses, biases = [[] for _ in backends], [[] for _ in backends]
    for k in range(len(idx)):
        for i, b in enumerate(backends):
            biases[i].append(conv_biases(b))
            losses[i].append(b.train(idx[k:k + 1])["loss"][0])
    return np.array(losses), biases


def named_weights(backend, twin) -> dict[str, np.ndarray]:
    """Every weight and running statistic of a CNN backend in float64, by torch_weights name; ``twin``: a
    (torch CNN, JAX CNN) pair of the same layout, for the other side of the name table."""
    if isinstance(backend, TorchBackend):
        return {n: t.detach().double().numpy().copy() for n, t, _ in torch_weights.pairs(backend.model, twin[1])}
    return {n: np.asarray(a, np.float64) for n, _, a in torch_weights.pairs(twin[0], trained_jax_model(backend))}


def weight_gaps(a, b, biases_a, biases_b, twin):
    """|b - a| per weight and running statistic (its largest entry), the pre-BN conv biases' own largest gap
    apart, and each running mean's share of the biases' gaps.

    A convolution's bias feeds batch norm, which subtracts the batch mean: its gradient is exactly
    zero, so what each framework computes is rounding noise (~1e-9 in float32, ~1e-15 in float64),
    which AdamW divides by that noise's own running RMS (+ eps 1e-8): in float32, steps of ~lr in
    a direction of each run's own. Those biases are reported apart: they do not change the
    training-mode output. The running means average the conv output *with* its bias, so their gap
    is taken net of the biases' share: the exponential average (momentum 0.1) of each step's bias gap.
    """
    share = [0.0] * len(NARROW_CONVS)
    for ba, bb in zip(biases_a, biases_b):
        share = [0.9 * s + 0.1 * (y - x) for s, x, y in zip(share, ba, bb)]
    wa, wb = named_weights(a, twin), named_weights(b, twin)
    gaps = {n: wb[n] - wa[n] for n in wa}
    noise = max(float(np.abs(gaps.pop(f"conv{i}.bias")).max()) for i in range(len(NARROW_CONVS)))
    for i, s in enumerate(share):
        gaps[f"bn{i}.running_mean"] -= s
    return {n: float(np.abs(v).max()) for n, v in gaps.items()}, noise, share


def align_biases(tb, ref: dict[str, np.ndarray], share) -> None:
    """Give the torch CNN the reference's pre-BN conv biases and take their gaps' share out of its running
    means: its eval-mode output, conv + bias - running mean, then no longer carries the biases' noise."""
    convs = [m for m in tb.model.features if isinstance(m, torch.nn.Conv2d)]
    norms = [m for m in tb.model.features if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for i, (conv, bn) in enumerate(zip(convs, norms, strict=True)):
            conv.bias.copy_(torch.from_numpy(ref[f"conv{i}.bias"]))
            bn.running_mean.sub_(torch.from_numpy(share[i]))


def test_cnn_jax_torch_float64_with_batch_norm():
    steps = 20
    with jax.enable_x64(True):
        jb, tb, _ = cnn_twins(jnp.float64, lr=1e-3)
        (jl, tl), biases = train_stepwise([jb, tb], batch_stream(4, 4, steps, 0))
        gaps, noise, _ = weight_gaps(jb, tb, *biases, (tb.model, trained_jax_model(jb)))
    assert jl[-1] < jl[0] - 0.1
    bound = run_bound(U64, n=4 * 32 * 32, steps=steps)  # the widest sum: batch norm's over 4 x 32 x 32 entries
    print(f"loss gap {np.abs(jl - tl).max():.3g}, weights gap {max(gaps.values()):.3g}, bias noise {noise:.3g}; bound {bound:.3g}")
    assert np.abs(jl - tl).max() <= bound
    # Every weight and running statistic; no eval-mode loss here: JAX sums it in float32 for uint8 inputs.
    assert max(gaps.values()) <= bound, max(gaps, key=gaps.get)
    # The biases' noise: AdamW steps at most lr |m_hat| / eps <= lr max|g| / eps, and a gradient that is zero
    # but for rounding is at most a sum's rounding error, sum_rel_error(4096) x its terms' magnitudes (<= 1).
    assert noise <= 2 * steps * 1e-3 * sum_rel_error(4 * 32 * 32, U64) / 1e-8


def test_cnn_jax_torch_float32_with_batch_norm():
    """The seed's precision and optimizer (AdamW, lr 1e-4), against a noise floor measured here.

    The floor: the torch run again from weights each moved one ulp (tolerances.nudge), which differ from
    the first run's as one rounding would; JAX and torch round differently at every operation, so their
    gaps are of that floor's order, and a real change (a hyper-parameter, a weight left unconverted) is
    orders above it. The eval-mode loss is compared with the pre-BN conv biases aligned (align_biases):
    unaligned, it carries the biases' AdamW-amplified noise (up to ~lr a step in each run, whatever the
    rounding: adam_drift_bound), which shifts the eval-mode output by amounts no rounding analysis bounds.
    """
    lr, steps = 1e-4, 5
    jb, tb, tb_nudged = cnn_twins(jnp.float32, lr=lr, nudge_seed=0)
    (jl, tl, tl_nudged), (bj, bt, bt_nudged) = train_stepwise([jb, tb, tb_nudged], batch_stream(4, 4, steps, 0))
    twin = (tb.model, trained_jax_model(jb))
    gaps, noise, share = weight_gaps(jb, tb, bj, bt, twin)
    floor_gaps, floor_noise, floor_share = weight_gaps(tb, tb_nudged, bt, bt_nudged, twin)
    je, te = jb.evaluate()["test"]["loss"], tb.evaluate()["test"]["loss"]
    align_biases(tb_nudged, named_weights(tb, twin), floor_share)
    align_biases(tb, named_weights(jb, twin), share)
    te_nudged, te_aligned = tb_nudged.evaluate()["test"]["loss"], tb.evaluate()["test"]["loss"]
    # Scalars: the floor pools the per-step loss gaps and the eval-mode one, so that no single small draw sets it.
    floor = max(np.abs(tl - tl_nudged).max(), abs(te - te_nudged))
    print(f"loss gap {np.abs(jl - tl).max():.3g}, eval gap {abs(je - te_aligned):.3g} (unaligned {abs(je - te):.3g}),"
          f" scalar floor {floor:.3g}; weights gap {max(gaps.values()):.3g}, floor {max(floor_gaps.values()):.3g};"
          f" bias noise {noise:.3g}, {floor_noise:.3g}")
    assert jl[-1] < jl[0] - 0.1
    # The nudge changed the run, by rounding's size: below the worst case of one float32 sum over the 4096
    # entries a batch norm averages in the first block.
    assert 0 < floor <= sum_rel_error(4 * 32 * 32, U32) * abs(jl[0])
    assert np.abs(jl - tl).max() <= FLOOR_MULTIPLE * floor
    assert abs(je - te_aligned) <= FLOOR_MULTIPLE * floor
    assert max(gaps.values()) <= FLOOR_MULTIPLE * max(floor_gaps.values()), max(gaps, key=gaps.get)
    # The biases' noise: each run's AdamW moves a bias at most adam_drift_bound, whatever its gradient.
    assert max(noise, floor_noise) <= 2 * adam_drift_bound(lr, steps, weight_decay=0.01)
