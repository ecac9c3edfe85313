"""The bench's PyTorch candidates (train.bench.records.TORCH_CANDIDATES) train the same model as the
trainer's plain PyTorch step: each, applied to the experiment's own ``TorchBackend``, gives its
losses over a few steps, so the bench times a correct model. And the nn.RNN twin is the loop twin:
the same losses and gradients.

torch.compile costs seconds per model on a CPU: the models are tiny and the compiled cases few.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from data.palindrome import make_palindrome_data  # noqa: E402
from test_cross_framework import MEAN, NARROW_CONVS, STD, narrow_cnn  # noqa: E402
from tolerances import FLOOR_MULTIPLE, U32, run_bound  # noqa: E402
from train.backends import base  # noqa: E402
from train.backends import torch_models as tm  # noqa: E402
from train.bench import torch_options  # noqa: E402
from train.bench.records import TORCH_CANDIDATES  # noqa: E402
from train.bench.workloads import make_workload  # noqa: E402
from train.experiments import cifar, rnn  # noqa: E402

STEPS = 4
ON_CUDA = torch.cuda.is_available()


def _toy():
    """The toy experiment's own PyTorch backend (the bench's hook) and 4 of its batches of 30."""
    wl = make_workload("mlp-toy", gpu=False, quick=True, seed=0, steps=STEPS)
    return (lambda: wl.spec.torch(wl, wl.cfg, None)), wl.idx


def _rnn():
    """The RNN experiment's backend at T=5, hidden 16, batch 16; StepLR decays every step and the
    clip acts, so the compiled optimizer step meets every piece of the recipe."""
    cfg = rnn.RNNConfig(input_length=5, hidden=16, data_size=256, lr_step=1, lr_gamma=0.5,
                        clip_norm=0.3)
    d = make_palindrome_data(5, data_size=cfg.data_size, portion_train=cfg.portion_train, seed=0)
    arrays = {"train_x": d.train_x, "train_y": d.train_y.astype(np.int32)}
    jm = rnn.build_model(cfg)
    make = lambda: base.from_jax("torch", jm, rnn.recipe(cfg, 1), arrays)  # noqa: E731
    return make, np.arange(STEPS * 16).reshape(STEPS, 16)


def _cnn():
    """The CIFAR experiment's backend (AdamW, its normalisation) on the narrow CNN, batch 4."""
    rng = np.random.default_rng(3)
    x, y = rng.integers(0, 256, (8, 32, 32, 3)).astype(np.uint8), rng.integers(0, 10, 8).astype(np.int32)
    cfg = dataclasses.replace(cifar.cnn_config(), batch_size=4)
    jm = narrow_cnn(jnp.float32)
    make = lambda: base.from_jax("torch", jm, cifar.recipe(cfg, MEAN, STD), {"train_x": x, "train_y": y})  # noqa: E731
    return make, np.arange(STEPS * 4).reshape(STEPS, 4) % 8


# The longest sum of each step, whose order inductor (or another kernel) may change: the toy's
# batch of 30; the RNN's weight gradient over 16 sequences x 5 steps; the narrow CNN's widest
# convolution gradient over 4 images x 32 x 32 positions.
MODELS = {"toy": (_toy, 30), "rnn": (_rnn, 16 * 5), "cnn": (_cnn, 4 * 32 * 32)}


def _losses(make, idx, mode: str | None) -> np.ndarray:
    backend = make()
    if mode is None:
        return backend.train(idx)["loss"]
    cand = TORCH_CANDIDATES[mode]
    torch_options.configure_process(backend.device.type)
    torch_options.apply(backend, cand)
    losses = backend.train(idx)["loss"]
    # The candidate is what it says: the forward under torch.compile, the optimizer's step compiled
    # with tensor learning rates (the scheduler's changes land in them), nn.RNN in place of the loop.
    compiled = isinstance(backend.model, torch_options._Compiled)
    assert compiled == (cand.compile_mode is not None)
    lrs = [g["lr"] for g in backend.opt.param_groups]
    assert all(isinstance(lr, torch.Tensor) for lr in lrs) == cand.compile_optimizer
    net = backend.model.forward_module.model if compiled else backend.model
    assert isinstance(net, tm.NNRNNClassifier) == cand.nn_rnn
    return losses


@pytest.mark.slow
@pytest.mark.xdist_group("torch_compile")   # one worker pays inductor's first-compile start-up, not both
@pytest.mark.parametrize("model,mode", [
    ("toy", "compile"), ("toy", "compile-max-autotune"), ("toy", "compile+opt"),
    pytest.param("toy", "compile-cudagraphs", marks=pytest.mark.skipif(not ON_CUDA, reason="CUDA only")),
    ("rnn", "compile+opt"), ("rnn", "nn.RNN-eager"), ("rnn", "nn.RNN-compile"), ("cnn", "compile+opt"),
])
def test_candidate_trains_as_the_plain_step(model, mode):
    build, n = MODELS[model]
    make, idx = build()
    plain, cand = _losses(make, idx, None), _losses(make, idx, mode)
    # Each step's sums reordered (and, for the compiled optimizer, its learning rate held in a float32
    # tensor: one more rounding of a step's size), the errors adding over the steps; the scale is the
    # loss itself (cross-entropy of 10 classes).
    bound = run_bound(U32, n, steps=STEPS, scale=float(np.abs(plain).max()), margin=FLOOR_MULTIPLE)
    assert np.abs(cand - plain).max() <= bound, (plain, cand, bound)


def test_nn_rnn_twin_is_the_loop_twin():
    """nn.RNN from the loop's weights: the same logits, loss gradients and hidden-state gradients."""
    torch.manual_seed(0)
    loop = tm.VanillaRNN(10, 16, 10)
    net = tm.NNRNNClassifier.from_loop(loop)
    x = torch.nn.functional.one_hot(torch.randint(0, 10, (8, 5)), 10).float()
    y = torch.randint(0, 10, (8,))
    losses = [torch.nn.functional.cross_entropy(m(x), y) for m in (loop, net)]
    for loss in losses:
        loss.backward()
    d = 10
    pairs = {"W_x": (loop.cell.weight.grad[:, :d], net.rnn.weight_ih_l0.grad),
             "W_h": (loop.cell.weight.grad[:, d:], net.rnn.weight_hh_l0.grad),
             "b": (loop.cell.bias.grad, net.rnn.bias_ih_l0.grad),
             "out": (loop.out.weight.grad, net.out.weight.grad)}
    # The widest sum: a weight gradient over 8 sequences x 5 time steps, of terms up to the largest
    # gradient entry; the forward's dot products are over input + hidden = 26 terms.
    assert abs(float(losses[0] - losses[1])) <= run_bound(U32, 26, scale=float(losses[0]))
    for name, (a, b) in pairs.items():
        bound = run_bound(U32, 8 * 5, scale=float(a.abs().max()))
        assert float((a - b).abs().max()) <= bound, name
    assert net.rnn.bias_hh_l0.grad is None and float(net.rnn.bias_hh_l0.abs().max()) == 0.0
    hl, hn = loop.hidden_states(x), net.hidden_states(x)
    assert max(float((a - b).abs().max()) for a, b in zip(hl, hn)) <= run_bound(U32, 26, steps=5)
