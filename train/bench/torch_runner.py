"""PyTorch: the experiments' ``TorchBackend``, its own ``train`` step timed, as each candidate.

Each suite's PyTorch twin is built by its experiment's hook (:mod:`train.bench.suites`), from the
JAX model's initial weights, as ``--framework torch`` builds it; a window is
``TorchBackend.train`` on the window's K batches. The candidates (``records.TORCH_CANDIDATES``:
eager, ``torch.compile`` in several modes, a compiled optimizer step, the RNN as ``nn.RNN``)
wrap or replace its model or optimizer (:mod:`train.bench.torch_options`); channels_last and bf16
autocast are the backend's own. Every such choice is in each record's ``settings``.

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

from train.bench.records import TORCH_CANDIDATES, TORCH_MODES, Record, skipped
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
    compile_skip: Callable[..., str]


def torch_runners(wl: Workload, *, precisions: Sequence[str], modes: Sequence[str],
                  jax_model: Callable[[str], Callable[[], Any]],
                  compile_skip: Callable[..., str] = lambda wl, p, mode=None: "",
                  compile_mode: str | None = None,
                  budget: Budget | None = None) -> list[Runner | Record]:
    """A runner (or a skipped record) per precision and candidate in ``modes``;
    ``jax_model(precision)()`` is the JAX model whose initial weights the twin copies;
    ``compile_skip(wl, precision, mode)`` says why a compiled candidate is left out ("" to run it); ``compile_mode`` replaces the ``compile`` candidate's torch.compile mode."""
    torch = import_torch()
    cands = [m for m in TORCH_MODES
             if m in modes and (wl.spec.torch_nn_rnn or not TORCH_CANDIDATES[m].nn_rnn)]
    if torch is None:
        return [skipped(wl.suite, "torch", m, NOT_INSTALLED, batch_size=wl.batch) for m in cands]
    from train.bench import torch_options   # imports torch: only once import_torch succeeded

    s = _Setup(torch, torch_options, wl, jax_model, compile_mode, compile_skip)
    return [(skipped(wl.suite, "torch", mode, why, precision=precision, batch_size=wl.batch)
             if why else prepare(functools.partial(_runner, s, mode, precision), wl, "torch", mode,
                                 precision, budget=budget))
            for precision in precisions if precision != "bf16" or wl.spec.bf16
            for mode in cands
            for why in [_skip_reason(s, mode, precision)]]


def _skip_reason(s: _Setup, mode: str, precision: str) -> str:
    cand = TORCH_CANDIDATES[mode]
    if cand.cuda_only and not s.torch.cuda.is_available():
        return f"{mode}: CUDA graphs need a CUDA device"
    return s.compile_skip(s.wl, precision, mode) if cand.compile_mode else ""


def _runner(s: _Setup, mode: str, precision: str) -> Runner | Record:
    from train.backends.torch_models import VanillaRNN, set_tf32   # imports torch, as this does

    torch, wl, cand = s.torch, s.wl, TORCH_CANDIDATES[mode]
    backend = wl.spec.torch(wl, with_precision(wl.cfg, precision), s.jax_model(precision))
    device = backend.device
    cuda = device.type == "cuda"
    why = ("the LSTM twin is nn.LSTM already (its other rows)"
           if cand.nn_rnn and not isinstance(backend.model, VanillaRNN) else
           f"{mode}: CUDA graphs need a CUDA device; this twin runs on {device.type}"
           if cand.cuda_only and not cuda else "")
    if why:
        return skipped(wl.suite, "torch", mode, why, precision=precision, batch_size=wl.batch)
    flags = s.opts.configure_process(device.type)
    applied = s.opts.apply(backend, cand, s.compile_mode if mode == "compile" else None)
    settings = {"channels_last": backend.channels_last, **flags, "tf32": backend.tf32,
                "autocast": "bf16" if backend.autocast is not None else None, **applied}
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
    compiled = TORCH_CANDIDATES[rec.mode].compile_mode is not None
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
