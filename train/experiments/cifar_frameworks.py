"""The CIFAR experiments' PyTorch and NumPy twins of the JAX run (``--framework torch|numpy``).

Each starts from the JAX model's initial weights (built with the same seed and converted), trains
on the same batches with the same AdamW, and normalises with the same channel statistics. The
JAX side normalises in float32, ``(x / 255 - mean) * (1 / std)``; so do the twins.
"""

from __future__ import annotations

import numpy as np

from numpy_mlp import MLP as NumpyMLP
from numpy_mlp.model import parse_hidden
from numpy_mlp.optim import AdamW
from train.backends.numpy_backend import NumpyBackend
from train.experiments.common import eval_splits
from train.backends.torch_backend import TorchBackend, adamw, require_torch


def _constants(mean, std):
    return np.asarray(mean, np.float32), np.asarray(1.0 / std, np.float32)


def numpy_backend(cfg, arrays, jax_model, mean, std) -> NumpyBackend:
    """The hand-written NumPy MLP with the JAX MLP's weights ([in, out] both) and the NumPy AdamW."""
    m, inv = _constants(mean, std)
    model = NumpyMLP(32 * 32 * 3, cfg.hidden, 10, seed=cfg.seed)
    model.set_weights([(np.asarray(lin.kernel[...]), np.asarray(lin.bias[...])) for lin in jax_model.linears])

    def preprocess(x):  # NHWC uint8 -> the flattened, normalised float32 rows the JAX MLP sees
        return ((x.astype(np.float32) * np.float32(1.0 / 255.0) - m) * inv).reshape(len(x), -1)
    return NumpyBackend(model, arrays, optimizer=AdamW(cfg.lr, weight_decay=cfg.weight_decay), preprocess=preprocess,
                        eval_splits=eval_splits(cfg), eval_batch=cfg.eval_batch)


def torch_backend(cfg, arrays, jax_model, mean, std) -> TorchBackend:
    """The PyTorch MLP or CNN (batch norm with Flax's running variance, see torch_models) on the GPU if any."""
    torch = require_torch()
    from train.backends import torch_models, torch_weights  # optional: only a torch run imports them

    cnn = cfg.model == "cnn"
    if cnn:
        net = torch_models.CNN(flax_bn=True)
    else:
        improved = cfg.variant == "improved"
        net = torch_models.MLP(32 * 32 * 3, parse_hidden(cfg.hidden), 10, batch_norm=improved,
                               dropout=cfg.dropout if improved else 0.0, flax_bn=True)
    torch_weights.load_from_jax(net, jax_model)
    m, inv = _constants(mean, std)
    shape = (1, 3, 1, 1) if cnn else (1, 1, 1, 3)  # the CNN's images are NCHW, the MLP's NHWC (flattened as JAX's)
    backend = TorchBackend(net, adamw(cfg.lr, cfg.weight_decay), None, arrays, seed=cfg.seed,
                           precision=cfg.precision_resolved(), nchw=cnn, eval_batch=cfg.eval_batch,
                           eval_splits=eval_splits(cfg))
    mt = torch.as_tensor(m, device=backend.device).view(shape)
    it = torch.as_tensor(inv, device=backend.device).view(shape)
    backend.preprocess = lambda x: (x.float() * (1.0 / 255.0) - mt) * it
    return backend


def other_backend(cfg, arrays, mean, std):
    """The backend of ``cfg.framework`` (torch or numpy), from the JAX model's initial weights."""
    from train.experiments.cifar import build_model  # cifar imports this module

    jax_model = build_model(cfg, axis_name=None)
    make = torch_backend if cfg.framework == "torch" else numpy_backend
    return make(cfg, arrays, jax_model, mean, std)
