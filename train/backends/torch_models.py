"""The project's architectures as a PyTorch user would write them, for ``--framework torch``.

They mirror ../shared/SEED_SPEC.md and ``jax_models/``, whose initial weights
``train.backends.torch_weights`` copies in. Imported only by torch code paths (an optional extra).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn

from jax_models.cnn import BLOCKS

CNN_BLOCKS = BLOCKS  # the CNN is defined once, in jax_models/cnn.py


class _BiasedRunningVar:
    """Batch norm whose running variance averages the *biased* batch variance, as Flax's does, so
    both frameworks evaluate with the same statistics (docs/cross-framework.md)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        dims = [d for d in range(x.dim()) if d != 1]
        y = nn.functional.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)
        with torch.no_grad():
            xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
            var, mean = torch.var_mean(xf, dim=dims, correction=0)
            self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)
            self.running_var.mul_(1 - self.momentum).add_(self.momentum * var)
            self.num_batches_tracked.add_(1)
        return y


class FlaxBatchNorm1d(_BiasedRunningVar, nn.BatchNorm1d):
    pass


class FlaxBatchNorm2d(_BiasedRunningVar, nn.BatchNorm2d):
    pass


class MLP(nn.Module):
    """As ``jax_models.mlp.MLP``; ``flax_bn`` picks :class:`FlaxBatchNorm1d` over ``nn.BatchNorm1d``."""

    def __init__(self, n_inputs: int, hidden: Sequence[int], n_classes: int, *, batch_norm: bool = False,
                 dropout: float = 0.0, flax_bn: bool = False) -> None:
        super().__init__()
        sizes = (n_inputs, *hidden, n_classes)
        bn = FlaxBatchNorm1d if flax_bn else nn.BatchNorm1d
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        self.norms = nn.ModuleList(bn(s) for s in sizes[1:-1]) if batch_norm else nn.ModuleList()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for i, lin in enumerate(self.linears[:-1]):
            x = lin(x)
            if len(self.norms):
                x = self.norms[i](x)
            x = torch.relu(x)
            if self.dropout is not None:
                x = self.dropout(x)
        return self.linears[-1](x)


class CNN(nn.Module):
    """x (N, 3, 32, 32) -> logits (N, 10); ``blocks`` as ``jax_models.cnn.CNN``'s, ``flax_bn`` as MLP's."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10, *, flax_bn: bool = False,
                 blocks: Sequence[Sequence[int]] = CNN_BLOCKS) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        bn = FlaxBatchNorm2d if flax_bn else nn.BatchNorm2d
        for block in blocks:
            for c_out in block:
                layers += [nn.Conv2d(c, c_out, 3, padding=1), bn(c_out), nn.ReLU(inplace=True)]
                c = c_out
            layers.append(nn.MaxPool2d(3, stride=2, padding=1))
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


class VanillaRNN(nn.Module):
    """h_t = tanh(W [x_t ; h_{t-1}] + b), one Linear; logits from h_T of one-hot x (B, T, input_dim)."""

    def __init__(self, input_dim: int = 10, hidden: int = 128, num_classes: int = 10) -> None:
        super().__init__()
        self.hidden = hidden
        self.cell = nn.Linear(input_dim + hidden, hidden)
        self.out = nn.Linear(hidden, num_classes)

    def hidden_states(self, x: torch.Tensor) -> list[torch.Tensor]:
        """h_1 .. h_T, each a node of the graph that h_{t+1} is computed from (for dL/dh_t)."""
        h = x.new_zeros(x.shape[0], self.hidden)
        hs = []
        for t in range(x.shape[1]):
            h = torch.tanh(self.cell(torch.cat([x[:, t], h], dim=1)))
            hs.append(h)
        return hs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.hidden_states(x)[-1])


class NNRNNClassifier(nn.Module):
    """:class:`VanillaRNN` as a PyTorch user writes it: ``nn.RNN(nonlinearity="tanh")`` (cuDNN on
    CUDA, PyTorch's native kernel on CPU). ``bias_hh`` stays zero and frozen, as the loop's one bias
    is nn.RNN's two acting as their sum (the LSTM twin's convention)."""

    def __init__(self, input_dim: int = 10, hidden: int = 128, num_classes: int = 10) -> None:
        super().__init__()
        self.hidden = hidden
        self.rnn = nn.RNN(input_dim, hidden, nonlinearity="tanh", batch_first=True)
        with torch.no_grad():
            self.rnn.bias_hh_l0.zero_()
        self.rnn.bias_hh_l0.requires_grad_(False)
        self.out = nn.Linear(hidden, num_classes)

    @classmethod
    def from_loop(cls, loop: VanillaRNN) -> NNRNNClassifier:
        """The same network as ``loop`` (its current weights, device and dtype): the cell's
        ``[W_x | W_h]`` split into ``weight_ih`` and ``weight_hh``."""
        w = loop.cell.weight
        d = w.shape[1] - loop.hidden
        net = cls(d, loop.hidden, loop.out.out_features).to(device=w.device, dtype=w.dtype)
        with torch.no_grad():
            net.rnn.weight_ih_l0.copy_(w[:, :d])
            net.rnn.weight_hh_l0.copy_(w[:, d:])
            net.rnn.bias_ih_l0.copy_(loop.cell.bias)
            net.out.load_state_dict(loop.out.state_dict())
        return net

    def hidden_states(self, x: torch.Tensor) -> list[torch.Tensor]:
        """h_1 .. h_T stepwise, each a graph node the next step uses (for dL/dh_t)."""
        h = x.new_zeros(1, x.shape[0], self.hidden)
        hs = []
        for t in range(x.shape[1]):
            _, h_next = self.rnn(x[:, t:t + 1], h)
            hs.append(h_next[0])
            h = hs[-1].unsqueeze(0)
        return hs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.rnn(x)
        return self.out(y[:, -1])


class LSTMClassifier(nn.Module):
    """nn.LSTM on one-hot digits; logits from h_T. ``bias_hh`` stays zero and frozen, as the JAX
    cell has one bias where nn.LSTM has two acting as their sum."""

    def __init__(self, input_dim: int = 10, hidden: int = 128, num_classes: int = 10) -> None:
        super().__init__()
        self.hidden = hidden
        self.lstm = nn.LSTM(input_dim, hidden, batch_first=True)
        with torch.no_grad():
            self.lstm.bias_hh_l0.zero_()
        self.lstm.bias_hh_l0.requires_grad_(False)
        self.out = nn.Linear(hidden, num_classes)

    def hidden_states(self, x: torch.Tensor) -> list[torch.Tensor]:
        """h_1 .. h_T stepwise, each a graph node the next step uses (for dL/dh_t)."""
        h = c = x.new_zeros(1, x.shape[0], self.hidden)
        hs = []
        for t in range(x.shape[1]):
            _, (h_next, c) = self.lstm(x[:, t:t + 1], (h, c))
            hs.append(h_next[0])
            h = hs[-1].unsqueeze(0)  # the very tensor in hs feeds the next step
        return hs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.lstm(x)
        return self.out(y[:, -1])


def set_tf32(enabled: bool) -> None:
    """TF32 on or off for CUDA float32 matmuls, convolutions and RNNs, process-wide. Uses the
    ``fp32_precision`` API where it exists, never mixed with legacy ``allow_tf32`` (that raises)."""
    mode = "tf32" if enabled else "ieee"
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    new_api = hasattr(getattr(cudnn, "conv", None), "fp32_precision")
    if hasattr(matmul, "fp32_precision") and new_api:
        matmul.fp32_precision = cudnn.conv.fp32_precision = cudnn.rnn.fp32_precision = mode
    else:
        matmul.allow_tf32 = cudnn.allow_tf32 = enabled
