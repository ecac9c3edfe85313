"""PyTorch: ``train.backends.torch_models`` trained eagerly and under ``torch.compile``.

PyTorch is an optional extra: ``torch``, and ``train.backends.torch_models`` which needs it, are imported
only here, through :func:`train.backends.torch_backend.import_torch` and after it succeeded, so the rest of the bench runs
without them (its records are then skipped with a note). On a GPU the runners use PyTorch's own
speed recipe (channels_last, ``cudnn.benchmark``, fused AdamW, bf16 autocast); every such choice
is in each record's ``settings``.
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
from train.bench.workloads import Workload
from train.backends.torch_backend import import_torch

NOT_INSTALLED = "PyTorch not installed (optional extra: pip install .[torch])"


@dataclass
class _Setup:
    """One workload's tensors on the device and the process-wide PyTorch settings."""

    torch: Any
    tm: Any                          # train.backends.torch_models
    wl: Workload
    device: Any
    data: Any                        # torch_models.DeviceData
    backend: dict                    # configure_backend's flags
    compile_mode: str

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()


def torch_runners(wl: Workload, *, precisions: Sequence[str], modes: Sequence[str],
                  compile_skip: Callable[[Workload, str], str] = lambda wl, p: "",
                  compile_mode: str | None = None,
                  budget: Budget | None = None) -> list[Runner | Record]:
    """Eager and compiled runners; ``compile_skip(wl, precision)`` says why a compiled
    configuration is left out ("" to compile it); ``compile_mode`` defaults to the device's
    ``torch_models.COMPILE_MODE``."""
    torch = import_torch()
    if torch is None:
        return [skipped(wl.suite, "torch", m, NOT_INSTALLED, batch_size=wl.batch)
                for m in TORCH_MODES if m in modes]
    from train.backends import torch_models as tm   # imports torch: only once import_torch succeeded

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    channels_last = device.type == "cuda" and wl.suite == "cnn"   # cuDNN's fast layout
    s = _Setup(torch, tm, wl, device, tm.device_data(wl.suite, wl.train_x, wl.train_y, wl.idx,
                                                     device=device, channels_last=channels_last,
                                                     mean=wl.mean, std=wl.std),
               tm.configure_backend(device.type), compile_mode or tm.COMPILE_MODE[device.type])
    return [(skipped(wl.suite, "torch", mode, why, precision=precision, batch_size=wl.batch)
             if why else prepare(functools.partial(_runner, s, mode, precision), wl, "torch", mode,
                                 precision, budget=budget))
            for precision in precisions if not (precision == "bf16" and wl.suite == "toy")
            for mode in TORCH_MODES if mode in modes
            for why in [compile_skip(wl, precision) if mode == "compiled" else ""]]


def _runner(s: _Setup, mode: str, precision: str) -> Runner:
    torch, tm, wl, d = s.torch, s.tm, s.wl, s.data
    cm = s.compile_mode if mode == "compiled" else None
    # TF32 (CUDA only; off for fp32) is a process-wide switch that eager kernels read at each
    # launch and torch.compile bakes in: set before building and compiling, and again at the
    # start of each window.
    tf32 = precision != "fp32" if s.cuda else None
    use_tf32 = functools.partial(tm.set_tf32, tf32) if s.cuda else (lambda: None)
    use_tf32()
    model, opt, fused = tm.build(wl.suite, hidden=wl.hidden, lr=wl.lr, seed=wl.cfg.seed,
                                 device=s.device, channels_last=d.channels_last,
                                 weight_decay=getattr(wl.cfg, "weight_decay", 0.01))
    step = tm.make_train_step(model, opt, d.preprocess,
                              clip_norm=getattr(wl.cfg, "clip_norm", None),
                              device_type=s.device.type, compile_mode=cm,
                              autocast_dtype=torch.bfloat16 if precision == "bf16" else None)
    settings = {"channels_last": d.channels_last, **s.backend, "tf32": tf32, "fused_adamw": fused,
                "autocast": "bf16" if precision == "bf16" else None, "compile_mode": cm}
    extra = {"threads": torch.get_num_threads(), "device": str(s.device),
             "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}
    rec = Record(wl.suite, "torch", mode, precision, 1, wl.batch, steps_per_window=wl.steps,
                 settings=settings, extra=extra)
    _first_call(s, rec, lambda: step(*d.batch(0)))

    def window():
        use_tf32()
        for k in range(len(d.idx)):
            step(*d.batch(k))
        s.sync()

    def after(r):
        if s.cuda:
            r.peak_memory_bytes = int(torch.cuda.max_memory_allocated())
    return Runner(rec, window, after)


def _first_call(s: _Setup, rec: Record, first_step: Callable[[], Any]) -> None:
    """Time the first step (eager: lazy initialisation; compiled: graph capture + inductor) into
    ``rec.compile_s``; for compiled runners, what torch.compile did (graphs, breaks)."""
    compiled = rec.mode == "compiled"
    if compiled:
        rec.note = ("compile_s: first call; inductor reuses kernels from its on-disk cache "
                    "(TORCHINDUCTOR_CACHE_DIR), so a first-ever compile takes longer")
    if s.cuda:
        s.torch.cuda.reset_peak_memory_stats()
    before = s.tm.compile_counters()
    t = time.perf_counter()
    first_step()
    s.sync()
    rec.compile_s = time.perf_counter() - t
    if compiled:   # graph breaks or skipped CUDA graphs make "compiled" mean less than it says
        rec.extra["compile_counters"] = {k: v - before.get(k, 0)
                                         for k, v in s.tm.compile_counters().items()}
