"""PyTorch, the original's framework, behind the backends' interface (see ``train.backends``).

Trains an ``nn.Module`` the way a PyTorch user writes it, from the JAX model's initial weights and
the same batches, so a run is the JAX run's twin (docs/cross-framework.md). Checkpoints hold what an
uninterrupted run carries on with (docs/resilience.md).
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from train.backends.base import Optimizer, Recipe
from train.engine.results import own_device_info
from train.errors import UsageError
from train.precision import TABLE, Precision

TORCH_MISSING = "--framework torch needs PyTorch: pip install '.[torch]' (or see the README's Cross-framework studies)"
NAME = "PyTorch"
PACKAGES = ("torch",)
MISSING = TORCH_MISSING


def import_torch():
    """``torch`` or None (an optional extra); the one place the project imports it.

    OMP_WAIT_POLICY defaults to PASSIVE: spinning OpenMP threads on a shared machine stall tiny steps.
    """
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import torch
    except Exception:  # noqa: BLE001 - ImportError, or a broken install
        return None
    return torch


def torch_available() -> bool:
    return import_torch() is not None


available = torch_available


def require_torch():
    """The torch module, or a one-line UsageError naming the extra that installs it."""
    torch = import_torch()
    if torch is None:
        raise UsageError(TORCH_MISSING)
    return torch


# The optimizers of the experiments, as PyTorch spells them (make_optimizer(params) -> (optimizer, scheduler)).
def sgd(lr: float):
    import torch
    return lambda params: (torch.optim.SGD(params, lr=lr), None)


def adamw(lr: float, weight_decay: float):
    """optax.adamw(lr, 0.9, 0.999, eps 1e-8, weight_decay): the same update, eps outside the sqrt."""
    import torch
    return lambda params: (torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.999), eps=1e-8,
                                             weight_decay=weight_decay), None)


def rmsprop_steplr(lr: float, step_epochs: int, gamma: float):
    """RMSprop (alpha 0.99, eps 1e-8) with StepLR per epoch: the same rate as JAX's per-step decay."""
    import torch

    def make(params):
        opt = torch.optim.RMSprop(params, lr=lr, alpha=0.99, eps=1e-8)
        return opt, torch.optim.lr_scheduler.StepLR(opt, step_size=step_epochs, gamma=gamma)
    return make


def optimizer(opt: Optimizer):
    """``opt`` (:class:`~train.backends.base.Optimizer`) in torch.optim's spelling."""
    if opt.kind == "sgd":
        return sgd(opt.lr)
    if opt.kind == "adamw":
        return adamw(opt.lr, opt.weight_decay)
    if opt.kind == "rmsprop":
        return rmsprop_steplr(opt.lr, opt.lr_step, opt.lr_gamma)
    raise UsageError(f"no torch.optim spelling of optimizer {opt.kind!r}")


def from_jax(jax_model, recipe: Recipe, arrays: Mapping[str, np.ndarray]) -> TorchBackend:
    """The PyTorch twin of ``jax_model`` (its weights converted) trained by ``recipe``. A tiny model
    runs on the CPU with one thread: kernel launches would outweigh its arithmetic."""
    torch = require_torch()
    from jax_models.rnn import RNNClassifier
    from train.backends import torch_models, torch_weights  # optional: only a torch run imports them

    dtype = torch.float64 if recipe.dtype == "float64" else torch.float32
    net = torch_weights.twin(jax_model).to(dtype)
    torch_weights.load_from_jax(net, jax_model)
    nchw = isinstance(net, torch_models.CNN)
    kw = {"eval_batch": recipe.eval_batch} if recipe.eval_batch is not None else {}
    if recipe.tiny:
        kw.update(device="cpu", threads=1)
    backend = TorchBackend(net, optimizer(recipe.optimizer), lambda x: x, arrays, seed=recipe.seed,
                           steps_per_epoch=recipe.steps_per_epoch, clip_norm=recipe.optimizer.clip_norm,
                           precision=recipe.precision, dtype=dtype, nchw=nchw, eval_splits=recipe.eval_splits, **kw)
    if isinstance(jax_model, RNNClassifier):
        n = jax_model.input_dim
        backend.preprocess = lambda x: torch.nn.functional.one_hot(x.long(), n).float()
    elif recipe.normalize is not None:
        shape = (1, 3, 1, 1) if nchw else (1, 1, 1, 3)  # the MLP's images stay NHWC (flattened as JAX's)
        mean, inv = (torch.as_tensor(np.asarray(a, np.float32), device=backend.device).view(shape)
                     for a in (recipe.normalize[0], 1.0 / recipe.normalize[1]))
        backend.preprocess = lambda x: (x.float() * (1.0 / 255.0) - mean) * inv
    return backend


def pick_device(requested: str | None = None):
    torch = require_torch()
    return torch.device(requested or ("cuda" if torch.cuda.is_available() else "cpu"))


def _own_threads(method):
    """Run ``method`` with the backend's torch thread count (if it has one), then restore the process's."""
    @functools.wraps(method)
    def run(self, *args, **kwargs):
        if self.threads is None:
            return method(self, *args, **kwargs)
        before = self.torch.get_num_threads()
        self.torch.set_num_threads(self.threads)
        try:
            return method(self, *args, **kwargs)
        finally:
            self.torch.set_num_threads(before)
    return run


class TorchBackend:
    """An nn.Module, its optimizer and the splits on one torch device. ``nchw`` stores NHWC images as
    NCHW (channels_last on CUDA); ``threads`` applies only while this backend computes."""

    framework = "torch"
    compile_time_s = 0.0
    devices = 1
    # Eager, as a PyTorch user runs it: compilation counts are XLA programs only (initial weights).
    compiler = "torch-eager"

    def __init__(self, model, make_optimizer: Callable, preprocess: Callable, arrays: Mapping[str, np.ndarray], *,
                 seed: int, steps_per_epoch: int | None = None, clip_norm: float | None = None,
                 precision: Precision | str = "fp32", dtype=None, nchw: bool = False, eval_batch: int = 1024,
                 eval_splits: Sequence[str] = ("train", "test"), device=None, threads: int | None = None) -> None:
        torch = self.torch = require_torch()
        from train.backends import torch_models
        self.device = pick_device(device) if not hasattr(device, "type") else device
        # torch's thread count is process-wide and orders every parallel sum, so it is set only
        # around this backend's calls: a run leaves the next run's numbers as they were.
        self.threads = threads if threads and self.device.type == "cpu" else None
        cuda = self.device.type == "cuda"
        precision = TABLE[precision] if isinstance(precision, str) else precision
        self.precision = precision
        # TF32 is a process-wide switch, set here (CUDA only); the bench sets it again before each of its windows.
        self.tf32 = precision.tf32 if cuda else None
        if cuda:
            torch_models.set_tf32(self.tf32)
        self.autocast = torch.bfloat16 if precision.autocast else None
        self.dtype = dtype or torch.float32
        self.channels_last = nchw and cuda
        fmt = torch.channels_last if self.channels_last else torch.preserve_format
        self.model = model.to(self.device, dtype=self.dtype, memory_format=fmt)
        # Kept so that a model swapped in before the first step (the bench's nn.RNN twin) gets its own.
        self.make_optimizer = make_optimizer
        self.opt, self.scheduler = make_optimizer([p for p in self.model.parameters() if p.requires_grad])
        self.preprocess, self.clip_norm, self.steps_per_epoch = preprocess, clip_norm, steps_per_epoch
        self.data = {k: self._to_device(k, v, nchw) for k, v in arrays.items()}
        self.eval_splits, self.eval_batch = tuple(eval_splits), eval_batch
        self.param_count = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        self.steps = 0
        torch.manual_seed(seed)  # dropout masks: torch's own stream, not JAX's
        self.loss_fn = torch.nn.CrossEntropyLoss()
        self.last_predictions: dict[str, np.ndarray] = {}

    @property
    def platform(self) -> str:
        return self.device.type  # cpu, cuda, ...

    def device_kind(self) -> str | None:
        return self.torch.cuda.get_device_name(self.device) if self.platform == "cuda" else None

    def device_info(self) -> dict:
        """config.json's ``devices``: the device this run trains on (JAX's would say where JAX runs)."""
        return own_device_info(self.platform, self.device_kind())

    def _generators(self) -> dict:
        """{name: (get_state, set_state)} of the random generators this run draws from."""
        torch = self.torch
        out = {"cpu": (torch.get_rng_state, torch.set_rng_state)}
        if self.platform == "cuda":
            out["cuda"] = (lambda: torch.cuda.get_rng_state(self.device),
                           lambda s: torch.cuda.set_rng_state(s, self.device))
        return out

    def host_state(self) -> dict:
        """Everything training carries from one period to the next, as a pytree of NumPy arrays."""
        from train.backends.torch_state import optimizer_to_tree, to_tree
        tree = {"model": to_tree(self.model.state_dict()), "optimizer": optimizer_to_tree(self.opt),
                "steps": to_tree(self.steps), "rng": {k: to_tree(get()) for k, (get, _) in self._generators().items()}}
        if self.scheduler is not None:
            tree["scheduler"] = to_tree(self.scheduler.state_dict())
        return tree

    def restore_template(self) -> None:
        """None: read back as saved, as a fresh optimizer lacks per-parameter state until its first step."""
        return None

    def load_state(self, tree) -> None:
        from train.backends.torch_state import from_tree, optimizer_from_tree
        self.model.load_state_dict(from_tree(self.model.state_dict(), tree["model"]))
        self.opt.load_state_dict(optimizer_from_tree(self.opt, tree["optimizer"]))
        if self.scheduler is not None:
            self.scheduler.load_state_dict(from_tree(self.scheduler.state_dict(), tree["scheduler"]))
        self.steps = int(tree["steps"])
        for name, (get, set_state) in self._generators().items():
            set_state(from_tree(get(), tree["rng"][name]))

    def _to_device(self, key: str, a: np.ndarray, nchw: bool):
        t = self.torch.as_tensor(np.ascontiguousarray(a)).to(self.device)
        if key.endswith("_y"):
            return t.long()
        if nchw:  # the permuted view of NHWC images is channels_last in memory
            t = t.permute(0, 3, 1, 2)
            t = t if self.channels_last else t.contiguous()
        return t

    def _inputs(self, x):
        x = self.preprocess(x)
        return x.to(self.dtype) if x.is_floating_point() else x

    def _logits(self, x):
        with self.torch.autocast(self.device.type, dtype=self.autocast or self.torch.float32,
                                 enabled=self.autocast is not None):
            logits = self.model(self._inputs(x))
        return logits.float() if self.autocast is not None else logits

    @_own_threads
    def train(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        torch = self.torch
        self.model.train()
        x_all, y_all = self.data["train_x"], self.data["train_y"]
        losses, accs = [], []
        for i in torch.as_tensor(np.asarray(idx)).long().to(self.device):
            xb, yb = x_all[i], y_all[i]
            self.opt.zero_grad(set_to_none=True)
            logits = self._logits(xb)
            loss = self.loss_fn(logits, yb)
            loss.backward()
            if self.clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_norm)
            self.opt.step()
            self.steps += 1
            if self.scheduler is not None and self.steps % self.steps_per_epoch == 0:
                self.scheduler.step()
            losses.append(loss.detach())
            accs.append((logits.detach().argmax(-1) == yb).double().mean())
        # One transfer per period, not a device sync per step.
        return {"loss": torch.stack(losses).double().cpu().numpy(), "accuracy": torch.stack(accs).cpu().numpy()}

    @_own_threads
    def evaluate(self) -> dict[str, dict]:
        torch = self.torch
        self.model.eval()
        ev = {}
        with torch.no_grad():
            for s in self.eval_splits:
                x, y = self.data[f"{s}_x"], self.data[f"{s}_y"]
                loss_sum, preds = 0.0, []
                for a in range(0, len(y), self.eval_batch):
                    logits = self._logits(x[a:a + self.eval_batch])
                    loss_sum += float(torch.nn.functional.cross_entropy(logits, y[a:a + self.eval_batch],
                                                                        reduction="sum"))
                    preds.append(logits.argmax(-1))
                pred = torch.cat(preds)
                self.last_predictions[s] = pred.cpu().numpy().astype(np.int32)
                ev[s] = {"loss": loss_sum / len(y), "accuracy": float((pred == y).double().mean()), "count": len(y)}
        return ev

    @_own_threads
    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        torch = self.torch
        self.model.eval()
        with torch.no_grad():
            logits = self._logits(torch.as_tensor(np.asarray(x)).to(self.device))
            return torch.softmax(logits.float(), -1).cpu().numpy()

    @_own_threads
    def grad_norms(self, x: np.ndarray, y: np.ndarray, run: int = 0) -> list[float]:
        """An RNN's mean_b ||dL/dh_t||, t = 1..T (as ``jax_models.rnn.grad_norms_wrt_hidden``)."""
        torch = self.torch
        self.model.eval()
        xt = self._inputs(torch.as_tensor(np.asarray(x)).to(self.device))
        hs = self.model.hidden_states(xt)
        loss = self.loss_fn(self.model.out(hs[-1]), torch.as_tensor(np.asarray(y)).long().to(self.device))
        grads = torch.autograd.grad(loss, hs)
        return [float(g.norm(dim=-1).mean()) for g in grads]
