"""The project's architectures as a PyTorch user would write them, for ``--framework torch``.

PyTorch is an optional extra (``pip install '.[torch]'``): only the torch code paths import this
module (``train.backends.torch_backend``, ``train.backends.torch_weights``, and ``train.bench``
after ``import torch`` succeeded). The models mirror ../shared/SEED_SPEC.md and the Flax versions
in ``jax_models/``, whose initial weights ``train.backends.torch_weights`` copies in:

* ``MLP``: Linear -> [BatchNorm1d] -> ReLU -> [Dropout] -> ... -> Linear (toy 2-20-2 and CIFAR
  3072-...-10, plain or improved).
* ``CNN``: five blocks of 3x3 conv + BatchNorm2d + ReLU, each ending in
  MaxPool2d(3, 2, 1); Linear(512 -> 10) (``blocks`` narrows it for cheap tests). NCHW logically;
  on a GPU weights and images are stored channels_last (NHWC in memory), cuDNN's fast layout.
* ``VanillaRNN``: one nn.Linear(input + hidden -> hidden) applied to
  ``cat([x_t, h_{t-1}])`` with tanh, a Python loop over time (as in the
  original assignment), Linear(hidden -> 10) on the last state; ``LSTMClassifier``: nn.LSTM.
* ``FlaxBatchNorm1d/2d``: PyTorch's batch norm with the running variance averaged as Flax does
  (biased), for the cross-framework runs.

``set_tf32`` is PyTorch's process-wide TF32 switch, which ``TorchBackend`` sets for its precision.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn

from jax_models.cnn import BLOCKS

CNN_BLOCKS = BLOCKS  # the CNN is defined once, in jax_models/cnn.py


class _BiasedRunningVar:
    """Batch norm whose running variance averages the *biased* batch variance, as Flax's BatchNorm does.

    PyTorch's own keeps the unbiased one (n / (n - 1) larger); the cross-framework runs use this so
    that both frameworks evaluate with the same running statistics. Training-mode normalisation
    (the biased batch variance) is PyTorch's own, unchanged.
    """

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
    """Linear -> [BatchNorm] -> ReLU -> [Dropout] -> ... -> Linear, as ``jax_models.mlp.MLP``.

    ``flax_bn`` picks :class:`FlaxBatchNorm1d` (the cross-framework runs) over ``nn.BatchNorm1d``.
    """

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
    """x (N, 3, 32, 32) -> logits (N, 10). ``flax_bn``: see :class:`MLP`.

    ``blocks``: each block's convolution widths, as ``jax_models.cnn.CNN``'s (narrower for cheap tests).
    """

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
    """h_t = tanh(W [x_t ; h_{t-1}] + b), one Linear; logits from h_T.

    x: one-hot (B, T, input_dim).
    """

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


class LSTMClassifier(nn.Module):
    """nn.LSTM (gates i, f, g, o, as the JAX cell's fused Linear) on one-hot digits; logits from h_T.

    nn.LSTM carries two biases that only ever act as their sum; the JAX cell has one. ``bias_hh``
    stays zero and frozen, so the trained parameters and their updates are the JAX model's.
    """

    def __init__(self, input_dim: int = 10, hidden: int = 128, num_classes: int = 10) -> None:
        super().__init__()
        self.hidden = hidden
        self.lstm = nn.LSTM(input_dim, hidden, batch_first=True)
        with torch.no_grad():
            self.lstm.bias_hh_l0.zero_()
        self.lstm.bias_hh_l0.requires_grad_(False)
        self.out = nn.Linear(hidden, num_classes)

    def hidden_states(self, x: torch.Tensor) -> list[torch.Tensor]:
        """h_1 .. h_T one step at a time, each a node of the graph that the next step is computed from."""
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
    """TF32 on or off for float32 matmuls (cuBLAS) and cuDNN convolutions and RNNs, process-wide.

    PyTorch >= 2.9's ``fp32_precision`` API ("tf32" or "ieee") where it exists, never mixed with the
    legacy ``allow_tf32`` flags (reading a legacy flag after a mixed setting raises), else the
    legacy flags. Only CUDA kernels read them.
    """
    mode = "tf32" if enabled else "ieee"
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    new_api = hasattr(getattr(cudnn, "conv", None), "fp32_precision")
    if hasattr(matmul, "fp32_precision") and new_api:
        matmul.fp32_precision = cudnn.conv.fp32_precision = cudnn.rnn.fp32_precision = mode
    else:
        matmul.allow_tf32 = cudnn.allow_tf32 = enabled
