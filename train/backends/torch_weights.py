"""The JAX models' weights in the PyTorch models' layouts, for cross-framework runs that start equal.

Every run of ``--framework torch`` starts from the weights its JAX twin would start from: the
JAX model is built with the same seed and its arrays are copied in. Layouts: a Flax Dense kernel
is ``[in, out]``, a torch Linear weight ``[out, in]``; a Flax Conv kernel HWIO, a torch Conv2d
weight OIHW; the JAX RNN cell is ONE Linear on ``[x_t ; h_{t-1}]`` (the LSTM's with gates
i, f, g, o along its output, nn.LSTM's order), which nn.LSTM splits into ``weight_ih`` (rows of
x_t) and ``weight_hh`` (rows of h_{t-1}). Batch norm: scale/bias/mean/var are weight/bias/
running_mean/running_var.

Importing this module imports torch: only the torch framework's code paths import it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from train.backends import torch_models as tm

Pair = tuple[str, torch.Tensor, np.ndarray]


def _a(v) -> np.ndarray:
    return np.asarray(v[...])


def _linear(name: str, t: nn.Linear, j) -> list[Pair]:
    return [(f"{name}.weight", t.weight, _a(j.kernel).T), (f"{name}.bias", t.bias, _a(j.bias))]


def _bn(name: str, t: nn.modules.batchnorm._BatchNorm, j) -> list[Pair]:
    return [(f"{name}.weight", t.weight, _a(j.scale)), (f"{name}.bias", t.bias, _a(j.bias)),
            (f"{name}.running_mean", t.running_mean, _a(j.mean)), (f"{name}.running_var", t.running_var, _a(j.var))]


def _conv(name: str, t: nn.Conv2d, j) -> list[Pair]:
    return [(f"{name}.weight", t.weight, _a(j.kernel).transpose(3, 2, 0, 1)), (f"{name}.bias", t.bias, _a(j.bias))]


def _mlp(t: tm.MLP, j) -> list[Pair]:
    out = [p for i, (a, b) in enumerate(zip(t.linears, j.linears)) for p in _linear(f"linears.{i}", a, b)]
    return out + [p for i, (a, b) in enumerate(zip(t.norms, j.norms)) for p in _bn(f"norms.{i}", a, b)]


def _cnn(t: tm.CNN, j) -> list[Pair]:
    convs = [m for m in t.features if isinstance(m, nn.Conv2d)]
    bns = [m for m in t.features if isinstance(m, nn.BatchNorm2d)]
    layers = [layer for block in j.blocks for layer in block]
    out = []
    for i, (c, b, layer) in enumerate(zip(convs, bns, layers, strict=True)):
        out += _conv(f"conv{i}", c, layer.conv) + _bn(f"bn{i}", b, layer.bn)
    return out + _linear("head", t.head, j.head)


def _rnn(t: tm.VanillaRNN, j) -> list[Pair]:
    return _linear("cell", t.cell, j.cell) + _linear("out", t.out, j.out)


def _lstm(t: tm.LSTMClassifier, j) -> list[Pair]:
    kernel, d = _a(j.cell.kernel), j.input_dim
    lstm = t.lstm
    return [("lstm.weight_ih_l0", lstm.weight_ih_l0, kernel[:d].T), ("lstm.weight_hh_l0", lstm.weight_hh_l0, kernel[d:].T),
            ("lstm.bias_ih_l0", lstm.bias_ih_l0, _a(j.cell.bias)),
            ("lstm.bias_hh_l0", lstm.bias_hh_l0, np.zeros_like(_a(j.cell.bias)))] + _linear("out", t.out, j.out)


_PAIRS = ((tm.MLP, _mlp), (tm.CNN, _cnn), (tm.LSTMClassifier, _lstm), (tm.VanillaRNN, _rnn))


def pairs(torch_model: nn.Module, jax_model) -> list[Pair]:
    """(name, torch tensor, the JAX model's array in the torch layout) for every weight and statistic."""
    for cls, fn in _PAIRS:
        if isinstance(torch_model, cls):
            return fn(torch_model, jax_model)
    raise TypeError(f"no weight conversion for {type(torch_model).__name__}")


def twin(jax_model) -> nn.Module:
    """The PyTorch model with ``jax_model``'s architecture (batch norm with Flax's running variance),
    chosen by the JAX model's type; its weights are still PyTorch's own (see :func:`load_from_jax`)."""
    from jax_models.cnn import CNN
    from jax_models.mlp import MLP
    from jax_models.rnn import RNNClassifier

    if isinstance(jax_model, MLP):
        sizes = [_a(lin.kernel).shape for lin in jax_model.linears]
        dropout = jax_model.dropout.rate if jax_model.dropout is not None else 0.0
        return tm.MLP(sizes[0][0], [s[1] for s in sizes[:-1]], sizes[-1][1], batch_norm=bool(len(jax_model.norms)),
                      dropout=dropout, flax_bn=True)
    if isinstance(jax_model, CNN):
        blocks = [[_a(layer.conv.kernel).shape[-1] for layer in block] for block in jax_model.blocks]
        c_in, n_out = _a(jax_model.blocks[0][0].conv.kernel).shape[2], _a(jax_model.head.kernel).shape[1]
        return tm.CNN(c_in, n_out, flax_bn=True, blocks=blocks)
    if isinstance(jax_model, RNNClassifier):
        cls = tm.LSTMClassifier if jax_model.cell_type == "lstm" else tm.VanillaRNN
        return cls(jax_model.input_dim, jax_model.hidden, jax_model.num_classes)
    raise TypeError(f"no PyTorch model for {type(jax_model).__name__}")


def load_from_jax(torch_model: nn.Module, jax_model) -> None:
    """Copy the JAX model's weights and batch statistics into ``torch_model`` (cast to its dtype)."""
    with torch.no_grad():
        for name, t, a in pairs(torch_model, jax_model):
            if t.shape != a.shape:
                raise ValueError(f"{name}: torch shape {tuple(t.shape)} vs converted JAX {a.shape}")
            t.copy_(torch.from_numpy(np.array(a, order="C")))  # a writable copy


def max_abs_diff(torch_model: nn.Module, jax_model) -> dict[str, float]:
    """Per weight, the largest |torch - JAX| (what the cross-framework tests bound)."""
    return {name: float(np.max(np.abs(t.detach().cpu().double().numpy() - a.astype(np.float64))))
            for name, t, a in pairs(torch_model, jax_model)}
