"""PyTorch: the experiments' ``TorchBackend``, its own ``train`` step timed, eager and compiled.

Each suite's PyTorch twin is built by its experiment's hook (:mod:`train.bench.suites`), from the
JAX model's initial weights, as ``--framework torch`` builds it; a window is
``TorchBackend.train`` on the window's K batches. The speed options (fused AdamW, cuDNN
autotuning, ``torch.compile``) wrap its optimizer or model (:mod:`train.bench.torch_options`);
channels_last and bf16 autocast are the backend's own. Every such choice is in each record's
``settings``.

PyTorch is an optional extra: ``torch`` is imported only through
:func:`train.backends.torch_backend.import_torch`, so the rest of the bench runs without it (its
records are then skipped with a note).
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from train.bench.records import TORCH_MODES, Record, skipped
from train.bench.timing import Budget, Runner, prepare
from train.bench.workloads import Workload, with_precision
from train.backends.torch_backend import import_torch

NOT_INSTALLED = "PyTorch not installed (optional extra: pip install .[torch])"


@dataclass
class _Setup:
    """What every PyTorch runner of one workload shares."""

    torch: Any
    opts: Any                        # train.bench.torch_options
    wl: Workload
    jax_model: Callable[[str], Callable[[], Any]]   # precision -> () -> the JAX model at init
    compile_mode: str | None


def torch_runners(wl: Workload, *, precisions: Sequence[str], modes: Sequence[str],
                  jax_model: Callable[[str], Callable[[], Any]],
                  compile_skip: Callable[[Workload, str], str] = lambda wl, p: "",
                  compile_mode: str | None = None,
                  budget: Budget | None = None) -> list[Runner | Record]:
    """Eager and compiled runners; ``jax_model(precision)()`` is the JAX model whose initial
    weights the twin copies; ``compile_skip(wl, precision)`` says why a compiled configuration is
    left out ("" to compile it); ``compile_mode`` defaults to the device's
    ``torch_options.COMPILE_MODE``."""
    torch = import_torch()
    if torch is None:
        return [skipped(wl.suite, "torch", m, NOT_INSTALLED, batch_size=wl.batch)
                for m in TORCH_MODES if m in modes]
    from train.bench import torch_options   # imports torch: only once import_torch succeeded

    s = _Setup(torch, torch_options, wl, jax_model, compile_mode)
    return [(skipped(wl.suite, "torch", mode, why, precision=precision, batch_size=wl.batch)
             if why else prepare(functools.partial(_runner, s, mode, precision), wl, "torch", mode,
                                 precision, budget=budget))
            for precision in precisions if precision != "bf16" or wl.spec.bf16
            for mode in TORCH_MODES if mode in modes
            for why in [compile_skip(wl, precision) if mode == "compiled" else ""]]


def _runner(s: _Setup, mode: str, precision: str) -> Runner:
    from train.backends.torch_models import set_tf32   # imports torch, as this runner does

    torch, wl = s.torch, s.wl
    backend = wl.spec.torch(wl, with_precision(wl.cfg, precision), s.jax_model(precision))
    device = backend.device
    cuda = device.type == "cuda"
    flags = s.opts.configure_process(device.type)
    fused = s.opts.fuse_adamw(backend)
    cm = (s.compile_mode or s.opts.COMPILE_MODE[device.type]) if mode == "compiled" else None
    if cm:
        s.opts.compile_forward(backend, cm)
    settings = {"channels_last": backend.channels_last, **flags, "tf32": backend.tf32,
                "fused_adamw": fused, "autocast": "bf16" if backend.autocast is not None else None,
                "compile_mode": cm}
    extra = {"threads": backend.threads or torch.get_num_threads(), "device": str(device),
             "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}
    rec = Record(wl.suite, "torch", mode, precision, 1, wl.batch, steps_per_window=wl.steps,
                 settings=settings, extra=extra)

    def train(idx):
        # TF32 is process-wide, and runners of other precisions run between this one's windows.
        if cuda:
            set_tf32(backend.tf32)
        backend.train(idx)   # returns the steps' metrics on the host: the device is synchronised

    _first_call(s, rec, cuda, lambda: train(wl.idx[:1]))

    def after(r):
        if cuda:
            r.peak_memory_bytes = int(torch.cuda.max_memory_allocated())
    return Runner(rec, lambda: train(wl.idx), after)


def _first_call(s: _Setup, rec: Record, cuda: bool, first_step: Callable[[], Any]) -> None:
    """Time the first step (eager: lazy initialisation; compiled: graph capture + inductor) into
    ``rec.compile_s``; for compiled runners, what torch.compile did (graphs, breaks)."""
    compiled = rec.mode == "compiled"
    if compiled:
        rec.note = ("compile_s: first call; inductor reuses kernels from its on-disk cache "
                    "(TORCHINDUCTOR_CACHE_DIR), so a first-ever compile takes longer")
    if cuda:
        s.torch.cuda.reset_peak_memory_stats()
    before = s.opts.compile_counters()
    t = time.perf_counter()
    first_step()
    rec.compile_s = time.perf_counter() - t
    if compiled:   # graph breaks or skipped CUDA graphs make "compiled" mean less than it says
        rec.extra["compile_counters"] = {k: v - before.get(k, 0)
                                         for k, v in s.opts.compile_counters().items()}
