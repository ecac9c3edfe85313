"""The project's architectures written the way a PyTorch user would write them, for ``python -m train bench``.

PyTorch is an optional extra (``pip install .[torch]``): nothing else in the
project imports this module, and ``train.bench`` imports it only after
``import torch`` succeeded. The models mirror ../shared/SEED_SPEC.md and the
Flax versions in ``jax_models/``:

* ``MLP``: Linear -> ReLU -> ... -> Linear (toy 2-20-2 and CIFAR 3072-...-10).
* ``CNN``: five blocks of 3x3 conv + BatchNorm2d + ReLU, each ending in
  MaxPool2d(3, 2, 1); Linear(512 -> 10). NCHW, PyTorch's layout.
* ``VanillaRNN``: one nn.Linear(input + hidden -> hidden) applied to
  ``cat([x_t, h_{t-1}])`` with tanh, a Python loop over time (as in the
  original assignment), Linear(hidden -> 10) on the last state.

Training is the idiomatic loop: ``zero_grad``, forward, ``CrossEntropyLoss``,
``backward``, (clip), ``optimizer.step()``, with the optimizers of the seed
(SGD for the toy MLP, AdamW(weight_decay=0.01) for the CIFAR models,
RMSprop + global-norm clipping for the RNN). Batches are gathered from
tensors that stay on the device, and normalised/one-hot encoded per batch,
the same work the JAX step does, so the frameworks are timed on equal terms.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

CNN_BLOCKS: tuple[tuple[int, ...], ...] = ((64,), (128,), (256, 256), (512, 512), (512, 512))


class MLP(nn.Module):
    def __init__(self, n_inputs: int, hidden: Sequence[int], n_classes: int) -> None:
        super().__init__()
        sizes = (n_inputs, *hidden, n_classes)
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(itertools.pairwise(sizes)):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


class CNN(nn.Module):
    """x (N, 3, 32, 32) -> logits (N, 10)."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for block in CNN_BLOCKS:
            for c_out in block:
                layers += [nn.Conv2d(c, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
                c = c_out
            layers.append(nn.MaxPool2d(3, stride=2, padding=1))
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


class VanillaRNN(nn.Module):
    """h_t = tanh(W [x_t ; h_{t-1}] + b), one Linear; logits from h_T. x: one-hot (B, T, input_dim)."""

    def __init__(self, input_dim: int = 10, hidden: int = 128, num_classes: int = 10) -> None:
        super().__init__()
        self.hidden = hidden
        self.cell = nn.Linear(input_dim + hidden, hidden)
        self.out = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.new_zeros(x.shape[0], self.hidden)
        for t in range(x.shape[1]):
            h = torch.tanh(self.cell(torch.cat([x[:, t], h], dim=1)))
        return self.out(h)


def make_preprocess(suite: str, *, mean: np.ndarray | None = None, std: np.ndarray | None = None,
                    device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """Per-batch input transform: uint8 images -> normalised float; digits -> one-hot; toy: identity."""
    if suite in ("mlp-cifar", "cnn"):
        # The CNN's images are NCHW (channels on axis 1); the MLP keeps NHWC and flattens.
        shape = (1, 3, 1, 1) if suite == "cnn" else (1, 1, 1, 3)
        m = torch.as_tensor(np.asarray(mean, np.float32), device=device).view(shape)
        inv = torch.as_tensor(1.0 / np.asarray(std, np.float32), device=device).view(shape)
        return lambda x: (x.float() * (1.0 / 255.0) - m) * inv
    if suite == "rnn":
        return lambda x: nn.functional.one_hot(x.long(), 10).float()
    return lambda x: x


def build(suite: str, *, hidden: Sequence[int] = (), lr: float, clip_norm: float | None = None,
          seed: int = 0) -> tuple[nn.Module, torch.optim.Optimizer, float | None]:
    """(model, optimizer, clip norm or None) for a bench suite, with the seed's optimizer."""
    torch.manual_seed(seed)
    if suite == "toy":
        model: nn.Module = MLP(2, hidden or (20,), 2)
        opt: torch.optim.Optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    elif suite == "mlp-cifar":
        model = MLP(3 * 32 * 32, hidden or (1024, 512, 256, 256, 128), 10)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    elif suite == "cnn":
        model = CNN()
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    elif suite == "rnn":
        model = VanillaRNN(10, hidden[0] if hidden else 128, 10)
        # PyTorch's RMSprop defaults (alpha 0.99, eps 1e-8) are what rnn.make_optimizer mirrors in optax.
        opt = torch.optim.RMSprop(model.parameters(), lr=lr)
    else:
        raise ValueError(f"unknown suite {suite!r}")
    return model, opt, clip_norm


def make_train_step(model: nn.Module, opt: torch.optim.Optimizer, preprocess, *, clip_norm: float | None = None,
                    autocast_dtype: torch.dtype | None = None, device_type: str = "cpu"):
    """step(x_batch, y_batch) -> loss tensor: one optimizer step, the textbook PyTorch way.

    ``autocast_dtype`` (e.g. torch.bfloat16) runs the forward under ``torch.autocast``,
    PyTorch's mixed-precision recipe: parameters and optimizer state stay float32.
    """
    loss_fn = nn.CrossEntropyLoss()
    model.train()

    def step(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            logits = model(preprocess(xb))
        loss = loss_fn(logits.float(), yb)
        loss.backward()
        if clip_norm is not None:
            nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
        opt.step()
        return loss

    return step
