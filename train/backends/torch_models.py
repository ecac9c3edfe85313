"""The project's architectures as a PyTorch user would write them: ``--framework torch`` and ``python -m train bench``.

PyTorch is an optional extra (``pip install '.[torch]'``): only the torch code paths import this
module (``train.backends.torch_backend`` and ``train.backends.torch_weights`` for the experiments' ``--framework
torch``, ``train.bench`` after ``import torch`` succeeded). The models mirror
../shared/SEED_SPEC.md and the Flax versions in ``jax_models/``, whose initial weights
``train.backends.torch_weights`` copies in for the experiments:

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

The bench's training (``make_train_step``) is the idiomatic loop: ``zero_grad``, forward, ``CrossEntropyLoss``,
``backward``, (clip), ``optimizer.step()``, with the optimizers of the seed
(SGD for the toy MLP, AdamW(weight_decay=0.01) for the CIFAR models,
RMSprop + global-norm clipping for the RNN). Batches are gathered from
tensors that stay on the device, and normalised/one-hot encoded per batch,
the same work the JAX step does, so the frameworks are timed on equal terms.
``configure_backend``, ``set_tf32`` and ``make_train_step``'s options are
PyTorch's own speed recipe on a GPU: cuDNN autotuning, TF32 (for the bench's
tf32 and bf16 rows; its fp32 rows are full fp32), channels_last, fused AdamW,
bf16 autocast, ``torch.compile``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
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


# torch.compile modes by device. On a GPU, "reduce-overhead" adds CUDA graphs to inductor's fused
# kernels: a whole forward (and backward) becomes one graph launch, which is what a launch-bound
# step (the RNN's 15 small time steps, the CIFAR MLP) needs; "max-autotune" would add minutes of
# autotuning per model. On CPU there are no CUDA graphs: "default".
COMPILE_MODE = {"cuda": "reduce-overhead", "cpu": "default"}


def configure_backend(device_type: str) -> dict:
    """Process-wide flags for PyTorch's fastest honest configuration on this device; returns them.

    On CUDA: cuDNN autotuning (``cudnn.benchmark``: each new shape tries the convolution algorithms
    once); TF32 is a per-precision choice (:func:`set_tf32`). On CPU it does not apply.
    """
    cuda = device_type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    # Every compiled runner of a bench traces the same code objects (the loss function, the models'
    # forward) for new models and shapes; past dynamo's recompile limit (8) it silently runs them
    # eagerly, and "compiled" rows would time eager code.
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, max(64, getattr(torch._dynamo.config, name)))
    return {"cudnn_benchmark": cuda}


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


def compile_counters() -> dict[str, int]:
    """Dynamo/inductor counters (graphs, graph breaks, CUDA-graph skips); the difference across a
    first call shows what torch.compile really did. Empty where this PyTorch lacks them."""
    try:
        from torch._dynamo.utils import counters
        return {"graphs": int(counters["stats"]["unique_graphs"]),
                "graph_breaks": int(sum(counters["graph_break"].values())),
                "cudagraph_skips": int(counters["inductor"]["cudagraph_skips"])}
    except Exception:  # noqa: BLE001 - private API
        return {}


def make_preprocess(suite: str, *, mean: np.ndarray | None = None, std: np.ndarray | None = None,
                    device: torch.device, channels_last: bool = False
                    ) -> Callable[[torch.Tensor], torch.Tensor]:
    """Per-batch input transform: uint8 images -> normalised float; digits -> one-hot; toy:
    identity."""
    if suite in ("mlp-cifar", "cnn"):
        # The CNN's images are NCHW (channels on axis 1); the MLP keeps NHWC and flattens.
        shape = (1, 3, 1, 1) if suite == "cnn" else (1, 1, 1, 3)
        m = torch.as_tensor(np.asarray(mean, np.float32), device=device).view(shape)
        inv = torch.as_tensor(1.0 / np.asarray(std, np.float32), device=device).view(shape)
        norm = lambda x: (x.float() * (1.0 / 255.0) - m) * inv
        # Elementwise ops keep the gathered batch's layout; this states it for cuDNN.
        if channels_last:
            return lambda x: norm(x).contiguous(memory_format=torch.channels_last)
        return norm
    if suite == "rnn":
        return lambda x: nn.functional.one_hot(x.long(), 10).float()
    return lambda x: x


@dataclass
class DeviceData:
    """A suite's training tensors on the device and the batches of one window."""

    x: torch.Tensor                  # all training inputs (images NCHW, channels_last if asked)
    y: torch.Tensor                  # int64 labels
    idx: list[torch.Tensor]          # K index vectors, one batch each
    preprocess: Callable[[torch.Tensor], torch.Tensor]
    channels_last: bool = False

    def batch(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch k, gathered on the device."""
        return self.x[self.idx[k]], self.y[self.idx[k]]


def device_data(suite: str, x: np.ndarray, y: np.ndarray, idx: np.ndarray, *, device: torch.device,
                channels_last: bool = False, mean: np.ndarray | None = None,
                std: np.ndarray | None = None) -> DeviceData:
    """Host arrays (images NHWC uint8) and a window's batches ``idx`` [K, B] -> tensors on
    ``device``."""
    xt = torch.as_tensor(x).to(device)
    if suite == "cnn":
        # PyTorch's modules take NCHW; the permuted view of NHWC images is channels_last in memory.
        xt = xt.permute(0, 3, 1, 2) if channels_last else xt.permute(0, 3, 1, 2).contiguous()
    return DeviceData(xt, torch.as_tensor(y).long().to(device),
                      [torch.as_tensor(i).long().to(device) for i in idx],
                      make_preprocess(suite, mean=mean, std=std, device=device,
                                      channels_last=channels_last), channels_last)


def _adamw(params, lr: float, weight_decay: float) -> tuple[torch.optim.Optimizer, bool]:
    """AdamW, fused (one kernel for all parameters) where this PyTorch supports it for the
    parameters' device; (optimizer, fused)."""
    params = list(params)
    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True), True
    except (RuntimeError, ValueError):
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay), False


def build(suite: str, *, hidden: Sequence[int] = (), lr: float, seed: int = 0,
          device: str | torch.device = "cpu", channels_last: bool = False,
          weight_decay: float = 0.01) -> tuple[nn.Module, torch.optim.Optimizer, bool | None]:
    """(model on ``device``, optimizer, fused AdamW or None for the other optimizers) for a bench
    suite, with the seed's optimizer (AdamW's ``weight_decay``: the CIFAR config's).
    ``channels_last`` stores the CNN's weights NHWC (cuDNN's fast layout for tensor cores)."""
    torch.manual_seed(seed)
    fused = None
    if suite == "toy":
        model: nn.Module = MLP(2, hidden or (20,), 2)
    elif suite == "mlp-cifar":
        model = MLP(3 * 32 * 32, hidden or (1024, 512, 256, 256, 128), 10)
    elif suite == "cnn":
        model = CNN()
    elif suite == "rnn":
        model = VanillaRNN(10, hidden[0] if hidden else 128, 10)
    else:
        raise ValueError(f"unknown suite {suite!r}")
    model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    if suite == "toy":
        opt: torch.optim.Optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    elif suite == "rnn":
        # PyTorch's RMSprop defaults (alpha 0.99, eps 1e-8): what rnn.make_optimizer mirrors.
        opt = torch.optim.RMSprop(model.parameters(), lr=lr)
    else:
        opt, fused = _adamw(model.parameters(), lr, weight_decay)
    return model, opt, fused


def make_train_step(model: nn.Module, opt: torch.optim.Optimizer, preprocess, *,
                    clip_norm: float | None = None,
                    autocast_dtype: torch.dtype | None = None, device_type: str = "cpu",
                    compile_mode: str | None = None):
    """step(x_batch, y_batch) -> loss tensor: one optimizer step, the textbook PyTorch way.

    ``autocast_dtype`` (e.g. torch.bfloat16) runs the forward under ``torch.autocast``,
    PyTorch's mixed-precision recipe: parameters and optimizer state stay float32.
    ``compile_mode`` compiles preprocessing + forward + loss (and, through AOTAutograd, their
    backward) with ``torch.compile(mode=compile_mode)``, as the PyTorch docs recommend; the
    optimizer step (fused where available) and clipping stay eager, so there is no graph break.
    """
    loss_fn = nn.CrossEntropyLoss()
    model.train()

    def loss_of(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type, dtype=autocast_dtype or torch.float32,
                            enabled=autocast_dtype is not None):
            logits = model(preprocess(xb))
        return loss_fn(logits.float(), yb)

    # CUDA graphs replay into the same output buffers: marking each step's start tells PyTorch
    # the previous step's outputs are dead.
    cudagraphs = compile_mode in ("reduce-overhead", "max-autotune") and device_type == "cuda"
    if compile_mode:
        loss_of = torch.compile(loss_of, mode=compile_mode, dynamic=False)

    def step(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        if cudagraphs:
            torch.compiler.cudagraph_mark_step_begin()
        opt.zero_grad(set_to_none=True)
        loss = loss_of(xb, yb)
        loss.backward()
        if clip_norm is not None:
            nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
        opt.step()
        return loss

    return step
