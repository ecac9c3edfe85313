"""The bench's PyTorch candidates, applied to a ``TorchBackend`` as the experiments build it.

PyTorch's own speed recipe, none of which the training runs use by default: cuDNN autotuning,
fused AdamW, ``torch.compile`` of the forward pass (default, max-autotune without CUDA graphs, or
with CUDA graphs on a GPU), a compiled optimizer step, and the RNN as ``nn.RNN``. Each wraps or
replaces the backend's model or optimizer; the step that runs is still ``TorchBackend.train``.
Imports torch: only after ``import_torch`` succeeded.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

from train.bench.records import TorchCandidate

def apply(backend, cand: TorchCandidate, compile_mode: str | None = None) -> dict:
    """Turn the freshly built ``backend`` into candidate ``cand`` (``compile_mode``: its forward's
    mode instead of the candidate's own); returns the record's settings for what was done."""
    from train.backends import torch_models as tm

    settings: dict = {}
    if cand.nn_rnn and isinstance(backend.model, tm.VanillaRNN):
        use_nn_rnn(backend)
    impl = {tm.VanillaRNN: "loop", tm.NNRNNClassifier: "nn.RNN", tm.LSTMClassifier: "nn.LSTM"}
    if type(backend.model) in impl:   # the RNN suite's implementation axis
        settings["implementation"] = impl[type(backend.model)]
    settings["fused_adamw"] = None if cand.compile_optimizer else fuse_adamw(backend)
    mode = (compile_mode or cand.compile_mode) if cand.compile_mode else None
    if mode:
        compile_forward(backend, mode)
    settings["compile_mode"] = mode
    if cand.compile_optimizer:
        compile_optimizer(backend)
        settings["compiled_optimizer"] = True
    return settings


def use_nn_rnn(backend) -> None:
    """The backend's loop RNN replaced, before its first step, by the same network as ``nn.RNN``
    (:class:`~train.backends.torch_models.NNRNNClassifier`), with an optimizer of its own."""
    from train.backends import torch_models as tm

    if backend.steps or backend.opt.state:
        raise ValueError("the nn.RNN twin replaces the model before the first step")
    backend.model = tm.NNRNNClassifier.from_loop(backend.model)
    backend.opt, backend.scheduler = backend.make_optimizer(
        [p for p in backend.model.parameters() if p.requires_grad])


def compile_optimizer(backend) -> None:
    """PyTorch's "compile the optimizer" recipe: ``opt.step`` under ``torch.compile``, its learning
    rates held in tensors so that a scheduler's changes update them in place instead of
    recompiling the step (a Python float is a constant of the compiled graph)."""
    opt = backend.opt
    for group in opt.param_groups:
        if not isinstance(group["lr"], torch.Tensor):
            group["lr"] = torch.tensor(float(group["lr"]))
    # The optimizer's own step: a scheduler wraps opt.step in a function dynamo will not trace.
    step = type(opt).step.__get__(opt)

    @torch.compile(fullgraph=False)
    def compiled_step():
        step()

    def stepped():
        compiled_step()
        opt._opt_called = True   # what the scheduler's wrapper records (it checks the order)

    stepped._wrapped_by_lr_sched = True
    opt.step = stepped


def configure_process(device_type: str) -> dict:
    """Process-wide flags for PyTorch's fastest honest configuration on this device; returns them.

    On CUDA: cuDNN autotuning (``cudnn.benchmark``: each new shape tries the convolution algorithms
    once). TF32 is each backend's own (its precision).
    """
    cuda = device_type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    # Every compiled runner of a bench traces the same code objects (the models' forward) for new
    # models and shapes; past dynamo's recompile limit it silently runs them eagerly, and
    # "compiled" rows would time eager code.
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, max(256, getattr(torch._dynamo.config, name)))
    return {"cudnn_benchmark": cuda}


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


def fuse_adamw(backend) -> bool | None:
    """Replace the backend's AdamW (before its first step) by the same AdamW fused into one kernel
    for all parameters, where this PyTorch supports it for their device. Returns whether it is
    fused; None for other optimizers."""
    opt = backend.opt
    if type(opt) is not torch.optim.AdamW or backend.scheduler is not None or opt.state:
        return None
    accepted = inspect.signature(torch.optim.AdamW).parameters
    kw = {k: v for k, v in opt.defaults.items() if k in accepted and k not in ("fused", "foreach")}
    try:
        backend.opt = torch.optim.AdamW(opt.param_groups[0]["params"], **kw, fused=True)
    except (RuntimeError, ValueError):
        return False
    return True


class _Forward(nn.Module):
    """Preprocessing and the model as one module, so that torch.compile fuses the normalisation
    or one-hot encoding into the model's first kernels."""

    def __init__(self, model: nn.Module, preprocess) -> None:
        super().__init__()
        self.model, self.preprocess = model, preprocess

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.preprocess(x))


class _Compiled(nn.Module):
    """``_Forward`` under ``torch.compile``; with CUDA graphs each call first marks a new step:
    graphs replay into the same output buffers, and the previous step's outputs are dead."""

    def __init__(self, forward: _Forward, mode: str, cudagraphs: bool) -> None:
        super().__init__()
        self.forward_module, self.cudagraphs = forward, cudagraphs
        forward.compile(mode=mode, dynamic=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.cudagraphs:
            torch.compiler.cudagraph_mark_step_begin()
        return self.forward_module(x)


def compile_forward(backend, mode: str) -> None:
    """The backend's preprocessing + forward pass under ``torch.compile(mode=mode)`` (and, through
    AOTAutograd, their backward), as the PyTorch docs recommend; the loss, clipping and the
    optimizer step stay the backend's own, eager."""
    cudagraphs = mode in ("reduce-overhead", "max-autotune") and backend.device.type == "cuda"
    backend.model = _Compiled(_Forward(backend.model, backend.preprocess), mode, cudagraphs)
    backend.preprocess = lambda x: x
