"""``python -m train bench``: training-step speed of every model in NumPy, JAX and PyTorch, side by side.

For each suite (model) and framework the benchmark measures, separately:

* **compile** (or first-call) time: JAX's ahead-of-time ``trace -> lower ->
  compile`` (each part recorded), ``torch.compile``'s first call, or the first
  eager step (lazy initialisation) for NumPy and PyTorch eager;
* **steady state**: the median over repeated timed windows, after warm-up, of
  (window time / steps in the window). Each window ends by waiting for the
  device (``block_until_ready``, ``torch.cuda.synchronize``) *inside* the timed
  region, so asynchronous dispatch never makes a step look free. The median
  is robust to other jobs on a shared machine stealing a window now and then.

All runners of a suite are prepared (and compiled) first, then timed
*interleaved*: round r runs window r of every runner back to back. Ratios
(speedups, ``pmap_vs_jit``) are medians over rounds of paired window ratios, so
a change in the machine's load during the run hits both sides of a ratio.

JAX is measured in several modes, so the cost of Python dispatch is visible:

* ``step-loop``: a Python loop that calls one jitted ``train_step`` per step
  (the batch is gathered on device from an index array, as in the trainer);
* ``fused``: K steps in one compiled call (``StepFns.train_steps``, a
  ``lax.scan``), which is what the project's trainer runs;
* ``pmap``: the fused steps under ``jax.pmap`` over 1..N local devices with
  the global batch split across them. On 1 device this is the pmap code path
  (axis name, pmean, a leading device axis) that ``Trainer`` avoids by using
  plain jit for n == 1, so ``pmap_vs_jit`` shows what the pmap path costs.

Data and state stay device resident; the state is donated. NumPy runs the
project's hand-written MLP (``sgd_step``) on the MLP suites. PyTorch (an
optional extra) runs ``train.torch_models`` eagerly and under
``torch.compile``, with PyTorch's own speed recipe on a GPU (channels_last,
``cudnn.benchmark``, fused AdamW, bf16 autocast); every such choice is in each
record's ``settings`` (``torch.set_num_threads`` left at its default;
``OMP_WAIT_POLICY`` defaults to PASSIVE, see :func:`import_torch`); when
``import torch`` fails its records are skipped with a note.

Precisions (``--precision``): ``fp32`` is full fp32 (JAX traces and compiles under
``jax.default_matmul_precision("highest")``; PyTorch with TF32 off), ``tf32`` is
fp32 storage with TF32 matmuls and convolutions (XLA's GPU default; PyTorch with
TF32 on), ``bf16`` is bf16 compute (bf16 JAX models; PyTorch bf16 autocast). On a
CPU, tf32 computes what fp32 does. Records state the matmul precision (JAX) or
the TF32 switch (PyTorch) in ``settings``.

``--profile DIR`` captures a ``jax.profiler`` trace of one extra window of each
timed JAX runner (``--profile-only`` picks which); ``--dump-hlo DIR`` writes each
compiled JAX program's optimised HLO. Both are named
``<suite>-<mode>-<precision>-b<batch>``, and each record's ``extra`` has the path.

``--batch-sizes`` runs suites at several batch sizes; ``batches`` in
``bench.json`` (and a table) gives each configuration's throughput at the
recipe batch and at its best batch, and on a GPU the checks compare JAX fused
bf16 with the fastest PyTorch record at the same batch. On a GPU the CIFAR
suites gather their batches from a 50,000-image synthetic train set.

The toy suite also times the *whole* 1,500-step run through the
project's own path (``mlp_toy.build_backends`` + ``train.loop.train_loop``) in fresh
processes, with JAX's persistent compilation cache empty (cold) and filled
(warm).

Output under ``<out>/bench/``: ``bench.json`` (``machine``, ``versions``,
``settings``, ``records``, ``ratios``, ``batches``, ``checks``), ``bench.md`` (the table, also printed)
and ``bench.png`` (speed relative to NumPy on CPU, to PyTorch eager on GPU).

Simulated devices on CPU: ``XLA_FLAGS=--xla_force_host_platform_device_count=4``
must be set in the environment before the process starts (JAX reads it once,
at import), e.g. ``XLA_FLAGS=--xla_force_host_platform_device_count=4 python -m
train bench --devices 1,2,4``; a device count above what exists is skipped
with a note.
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import functools
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from train.experiments.common import MATMUL_PRECISION
from train.results import (
    UsageError,
    atomic_write_json,
    atomic_write_text,
    package_versions,
    save_figure,
)

SUITES = ("toy", "mlp-cifar", "cnn", "rnn")
FRAMEWORKS = ("numpy", "jax", "torch")
PRECISIONS = ("fp32", "tf32", "bf16")
# Each JAX runner traces and compiles under the experiments' matmul (and convolution) precision,
# MATMUL_PRECISION[precision]; records state it so. PyTorch runs with TF32 off for fp32 only.
MATMUL_LABEL = {"fp32": "highest", "tf32": "default (TF32 on GPU)", "bf16": "default"}
JAX_MODES = ("step-loop", "fused", "pmap")
TORCH_MODES = ("eager", "compiled")
MODES = ("step", *JAX_MODES, *TORCH_MODES, "whole-run")  # "step": NumPy's plain loop
NUMPY_SUITES = ("toy", "mlp-cifar")   # the NumPy implementation is an MLP only
AXIS = "batch"
ROOT = Path(__file__).resolve().parents[1]

# The toy "whole run" is the seed's Task 1 schedule: 1,500 SGD steps, batch 30, evaluation every 30.
WHOLE_RUN_STEPS = 1500


# ---------------------------------------------------------------------------------------------------
# Records and timing
# ---------------------------------------------------------------------------------------------------

@dataclass
class Record:
    """One measurement: a (suite, framework, mode, precision, devices) cell of the table."""

    suite: str
    framework: str                   # numpy | jax | torch
    mode: str                        # step | step-loop | fused | pmap | eager | compiled | whole-run-cold | whole-run-warm
    precision: str = "fp32"
    devices: int = 1
    batch_size: int = 0
    compile_s: float | None = None   # JAX: trace+lower+compile; torch.compile: first call; eager: first step
    step_s: float | None = None      # median over windows of (window time / steps per window)
    examples_per_s: float | None = None
    steps_per_window: int = 0
    windows: int = 0
    window_step_s: list[float] = field(default_factory=list)  # every window's per-step time
    total_s: float | None = None     # whole-run records: build + all steps + evaluations + compilation
    peak_memory_bytes: int | None = None  # device.memory_stats() peak (process-wide) where reported
    skipped: bool = False
    note: str = ""
    settings: dict = field(default_factory=dict)  # speed-relevant choices: layout, fusion, TF32, compile mode...
    extra: dict = field(default_factory=dict)


def skipped(suite: str, framework: str, mode: str, note: str, **kw) -> Record:
    return Record(suite, framework, mode, skipped=True, note=note, **kw)


@dataclass
class Runner:
    """A prepared measurement: its record (compile / first-call time already filled in) and one
    timed window, a callable that runs ``steps_per_window`` steps and returns when they are done."""

    record: Record
    window: Callable[[], Any]
    after: Callable[[Record], None] | None = None   # e.g. read peak device memory once the windows ran


def time_interleaved(fns: Sequence[Callable[[], Any]], n_windows: int, *,
                     steps_per_window: int | Sequence[int] = 1, warmup: int = 1,
                     clock: Callable[[], float] = time.perf_counter) -> list[tuple[float, list[float]]]:
    """Time several window functions round-robin: ``warmup`` untimed rounds, then ``n_windows``
    rounds in which each function runs one window.

    Interleaving matters on a shared machine: when another job starts or stops, every contender
    sees the change in load, so the *ratios* of one run stay meaningful. Returns, per function,
    ``(first_call_s, per-step times of its timed windows)``; ``first_call_s`` is the duration of
    its first call (warm-up or timed), which pays for any lazy compilation or initialisation.
    ``steps_per_window`` is one count for all, or one per function.
    """
    steps = [steps_per_window] * len(fns) if isinstance(steps_per_window, int) else list(steps_per_window)
    if n_windows < 1 or warmup < 0 or len(steps) != len(fns) or any(k < 1 for k in steps):
        raise ValueError("need n_windows >= 1, steps_per_window >= 1 (one per function) and warmup >= 0")
    first: list[float | None] = [None] * len(fns)
    times: list[list[float]] = [[] for _ in fns]
    for rnd in range(warmup + n_windows):
        for j, fn in enumerate(fns):
            t = clock()
            fn()
            d = clock() - t
            if first[j] is None:
                first[j] = d
            if rnd >= warmup:
                times[j].append(d / steps[j])
    return [(f, t) for f, t in zip(first, times)]


def time_windows(fn: Callable[[], Any], n_windows: int, *, steps_per_window: int = 1, warmup: int = 1,
                 clock: Callable[[], float] = time.perf_counter,
                 out: list[float] | None = None) -> tuple[float, float]:
    """Time one window function (see :func:`time_interleaved`).

    Returns ``(first_call_s, median_step_s)``: the duration of the very first call and the median
    over the timed windows of window time / ``steps_per_window``. ``out``, when given, receives
    every timed window's per-step time, so the median can be checked.
    """
    ((first, times),) = time_interleaved([fn], n_windows, steps_per_window=steps_per_window,
                                         warmup=warmup, clock=clock)
    if out is not None:
        out.extend(times)
    return first, statistics.median(times)


def finish(rec: Record, windows: list[float]) -> Record:
    """Fill the steady-state fields of ``rec`` from its per-window step times."""
    rec.window_step_s = [float(w) for w in windows]
    rec.windows = len(windows)
    rec.step_s = float(statistics.median(windows))
    rec.examples_per_s = rec.batch_size / rec.step_s if rec.step_s > 0 else None
    return rec


def measure(items: Sequence[Runner | Record], wl: Workload, log=print) -> list[Record]:
    """Time every prepared runner of one suite, interleaved; skipped records pass through.

    A runner whose window raises is dropped from the remaining rounds and reported as skipped.
    """
    runners = [r for r in items if isinstance(r, Runner)]
    failed: dict[int, str] = {}

    def guarded(j, r):
        def run():
            if j in failed:
                return
            try:
                r.window()
            except Exception as e:  # noqa: BLE001 - one framework failing must not end the benchmark
                failed[j] = _err(e)
        return run

    results = time_interleaved([guarded(j, r) for j, r in enumerate(runners)], wl.windows,
                               steps_per_window=[r.record.steps_per_window for r in runners], warmup=wl.warmup)
    out = []
    for item in items:
        if isinstance(item, Record):
            out.append(item)
            log(_line(item))
            continue
        j = runners.index(item)
        rec = item.record
        if j in failed:
            rec = skipped(rec.suite, rec.framework, rec.mode, f"failed: {failed[j]}", precision=rec.precision,
                          devices=rec.devices, batch_size=rec.batch_size)
        else:
            first, times = results[j]
            rec.extra["first_window_s"] = round(first, 4)
            finish(rec, times)
            if item.after:
                item.after(rec)
        out.append(rec)
        log(_line(rec))
    return out


def _err(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"[:300]


@dataclass
class Budget:
    """``--time-budget``: no runner is prepared once ``seconds`` have passed since ``start``, so a run
    on a borrowed machine ends near a known time; what was left out says so."""

    seconds: float | None = None
    start: float = field(default_factory=time.perf_counter)

    def spent(self) -> str:
        if self.seconds is None or time.perf_counter() - self.start < self.seconds:
            return ""
        return f"not run: --time-budget {self.seconds:g} s was spent before it started"


def prepare(fn: Callable[[], Runner], wl: Workload, framework: str, mode: str, precision: str,
            devices: int = 1, budget: Budget | None = None) -> Runner | Record:
    """Build (and compile) one runner; a failure becomes a skipped record with the error, not a crash."""
    why = budget.spent() if budget else ""
    if not why:
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - e.g. torch.compile failing on this platform
            why = f"failed: {_err(e)}"
    return skipped(wl.suite, framework, mode, why, precision=precision, devices=devices, batch_size=wl.batch)


# ---------------------------------------------------------------------------------------------------
# Workloads: sizes and data shared by every framework
# ---------------------------------------------------------------------------------------------------

@dataclass
class Workload:
    """One suite's sizes and host data; every framework trains on the same batches."""

    suite: str
    batch: int
    steps: int                       # K: steps per timed window (and per fused call)
    windows: int
    warmup: int
    train_x: np.ndarray              # toy float32 [N, 2]; CIFAR uint8 [N, 32, 32, 3]; RNN uint8 digits [N, T]
    train_y: np.ndarray              # int32 [N]
    idx: np.ndarray                  # int32 [K, B]: the batches of one window
    mean: np.ndarray | None = None   # CIFAR channel statistics (normalisation)
    std: np.ndarray | None = None
    lr: float = 0.01
    hidden: tuple[int, ...] = ()
    input_length: int = 0


# (batch, steps per window K, timed windows, warm-up windows) by suite, platform and --quick. Windows
# are sized to tens of milliseconds or more, so the clock and the final device sync are noise; on a
# GPU they are few, because compilation, not timing, dominates a run there. The CPU CNN takes about a
# second per step even at batch 8 (XLA:CPU's convolutions; PyTorch's oneDNN ones are several times
# faster), so its CPU windows are one small step; on a GPU it runs the seed's batch 256.
_PLAN = {
    "toy":       {"cpu": (30, 500, 15, 2), "cpu-quick": (30, 300, 9, 1), "gpu": (30, 500, 15, 2), "gpu-quick": (30, 300, 7, 1)},
    "mlp-cifar": {"cpu": (256, 8, 15, 1), "cpu-quick": (256, 4, 11, 1), "gpu": (256, 50, 7, 1), "gpu-quick": (256, 50, 5, 1)},
    "cnn":       {"cpu": (32, 1, 3, 1), "cpu-quick": (8, 1, 3, 1), "gpu": (256, 30, 5, 1), "gpu-quick": (256, 20, 5, 1)},
    "rnn":       {"cpu": (128, 20, 9, 1), "cpu-quick": (128, 10, 7, 1), "gpu": (128, 100, 5, 1), "gpu-quick": (128, 100, 5, 1)},
}
# The seed's batch sizes: what "at the recipe batch" means in the batch summary and the checks.
RECIPE_BATCH = {"toy": 30, "mlp-cifar": 256, "cnn": 256, "rnn": 128}
# Synthetic CIFAR train set on a GPU: CIFAR-10's size, so every step gathers its random batch from a
# realistically large array (a small one stays in cache and flatters the gather).
GPU_TRAIN_IMAGES = 50_000


@functools.lru_cache(maxsize=2)
def _synthetic_cifar(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(uint8 images, int32 labels, channel mean, channel std), random: the content does not change
    the speed, and no data set is needed. Cached: a batch sweep asks for the same set again."""
    from data.cifar10 import channel_stats

    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xBE4C]))
    x = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, size=n).astype(np.int32)
    return (x, y, *channel_stats(x))


def make_workload(suite: str, *, gpu: bool, quick: bool, seed: int, batch: int | None = None,
                  steps: int | None = None, windows: int | None = None, warmup: int | None = None) -> Workload:
    from train.backends import batch_stream

    b0, k, w, wu = _PLAN[suite][("gpu" if gpu else "cpu") + ("-quick" if quick else "")]
    b = batch or b0
    # A larger batch takes proportionally fewer steps per window, so a window's work stays the same.
    k = steps or (k if b <= b0 else max(min(k, 10), round(k * b0 / b)))
    w, wu = windows or w, (wu if warmup is None else warmup)
    kw: dict[str, Any] = {}
    if suite == "toy":
        from data.toy import make_toy_data
        d = make_toy_data("moons", n_samples=1000, seed=seed)
        x, y, kw = d.train_x, d.train_y, {"lr": 0.01, "hidden": (20,)}
    elif suite in ("mlp-cifar", "cnn"):
        x, y, mean, std = _synthetic_cifar(max(GPU_TRAIN_IMAGES if gpu else 2048, 2 * b), seed)
        kw = {"mean": mean, "std": std, "lr": 1e-3 if suite == "mlp-cifar" else 1e-4,
              "hidden": (1024, 512, 256, 256, 128) if suite == "mlp-cifar" else ()}
    elif suite == "rnn":
        from data.palindrome import make_palindrome_data
        d = make_palindrome_data(15, data_size=max(4096, 2 * b), portion_train=0.8, seed=seed)
        x, y, kw = d.train_x, d.train_y, {"lr": 1e-3, "hidden": (128,), "input_length": 15}
    else:
        raise UsageError(f"unknown suite {suite!r}; choose from {', '.join(SUITES)}")
    if len(y) < b:
        raise UsageError(f"--batch-size {b} is larger than the {len(y)} examples of suite {suite}")
    idx = batch_stream(len(y), b, k, seed)
    return Workload(suite, b, k, w, wu, x, y.astype(np.int32), idx, **kw)


# ---------------------------------------------------------------------------------------------------
# NumPy
# ---------------------------------------------------------------------------------------------------

def numpy_runner(wl: Workload) -> Runner:
    """The project's NumPy MLP: K ``sgd_step`` calls per window (nothing to compile; compile_s = first step)."""
    from numpy_mlp import MLP

    n_in = int(np.prod(wl.train_x.shape[1:]))
    model = MLP(n_in, wl.hidden, 10 if wl.suite != "toy" else 2, seed=0)
    x = wl.train_x.astype(np.float32).reshape(len(wl.train_x), -1)
    note = ""
    if wl.suite == "mlp-cifar":
        # A NumPy user normalises the data set once, up front; the NumPy MLP has SGD only, no AdamW.
        x = ((x / 255.0).reshape(-1, 3) - wl.mean).reshape(x.shape) / np.tile(wl.std, n_in // 3)
        x = x.astype(np.float32)
        note = "SGD (the NumPy MLP has no AdamW); data normalised once up front"
    y = wl.train_y
    # The CIFAR MLP in NumPy is ~4x slower per step than the others: fewer steps per window keep
    # its rounds short, so the interleaved rounds (and the paired ratios) can be many.
    idx = wl.idx if wl.suite == "toy" else wl.idx[: max(1, len(wl.idx) // 4)]
    rec = Record(wl.suite, "numpy", "step", batch_size=wl.batch, steps_per_window=len(idx), note=note)
    t = time.perf_counter()
    model.sgd_step(x[idx[0]], y[idx[0]], wl.lr)
    rec.compile_s = time.perf_counter() - t

    def window():
        for i in idx:
            model.sgd_step(x[i], y[i], wl.lr)

    return Runner(rec, window)


# ---------------------------------------------------------------------------------------------------
# JAX
# ---------------------------------------------------------------------------------------------------

def _model_ctor(wl: Workload, dtype, axis_name: str | None):
    from flax import nnx

    def ctor():
        rngs = nnx.Rngs(0)
        if wl.suite in ("toy", "mlp-cifar"):
            from jax_models.mlp import MLP
            n_in = int(np.prod(wl.train_x.shape[1:]))
            return MLP(n_in, wl.hidden, 2 if wl.suite == "toy" else 10, dtype=dtype, axis_name=axis_name, rngs=rngs)
        if wl.suite == "cnn":
            from jax_models.cnn import CNN
            return CNN(dtype=dtype, axis_name=axis_name, rngs=rngs)
        from jax_models.rnn import RNNClassifier
        return RNNClassifier(input_dim=10, hidden=wl.hidden[0], num_classes=10, dtype=dtype, rngs=rngs)
    return ctor


def _optimizer(wl: Workload):
    import optax

    if wl.suite == "toy":
        return optax.sgd(wl.lr)
    if wl.suite == "rnn":
        from train.experiments.rnn import RNNConfig, make_optimizer
        return make_optimizer(RNNConfig(input_length=wl.input_length, batch_size=wl.batch, lr=wl.lr),
                              steps_per_epoch=max(1, len(wl.train_y) // wl.batch))
    # PyTorch AdamW's defaults (weight decay 0.01), as in train.experiments.cifar.
    return optax.adamw(wl.lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.01)


def _preprocess(wl: Workload):
    if wl.suite in ("mlp-cifar", "cnn"):
        from train.experiments.cifar import make_preprocess
        return make_preprocess(wl.mean, wl.std)
    return lambda x: x


def _host_init(ctor, seed: int):
    """(graphdef, params, model_state) with PyTorch-style uniform weights drawn on the host.

    Building a Flax model eagerly compiles one tiny XLA program per parameter shape for its
    random initialisers (about 10 s for the CNN on this CPU); the benchmark times training,
    not initialisation, so it builds the model abstractly and fills it with NumPy numbers.
    """
    import jax
    from flax import nnx

    graphdef, params, rest = nnx.split(nnx.eval_shape(ctor), nnx.Param, ...)
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        names = [k.key for k in path if isinstance(k, jax.tree_util.DictKey) and isinstance(k.key, str)]
        name = names[-1] if names else ""
        shape, dtype = leaf.shape, leaf.dtype
        if name == "kernel":
            bound = 1.0 / np.sqrt(max(1, int(np.prod(shape[:-1]))))
            return rng.uniform(-bound, bound, shape).astype(dtype)
        if name in ("scale", "var"):
            return np.ones(shape, dtype)
        return np.zeros(shape, dtype)  # biases, batch-norm means

    fill_tree = lambda t: jax.tree_util.tree_map_with_path(fill, t)
    return graphdef, fill_tree(params), fill_tree(rest)


@dataclass
class _JaxSetup:
    wl: Workload
    precision: str
    dtype: Any
    tx: Any
    preprocess: Any
    graphdef: Any
    graphdef_pmap: Any
    host_state: Any                  # TrainState of host arrays; each mode puts its own copy on device
    settings: dict


def _jax_settings(wl: Workload, precision: str) -> dict:
    """JAX's speed-relevant choices: the matmul precision the runner was compiled under ("default"
    is TF32 for float32 on a GPU) and, for the RNN, the time steps per scan loop trip."""
    out = {"matmul_precision": MATMUL_LABEL[precision]}
    if wl.suite == "rnn":
        from jax_models.rnn import resolve_unroll
        out["scan_unroll"] = resolve_unroll(None, wl.input_length)
    return out


def _jax_setup(wl: Workload, precision: str, seed: int) -> _JaxSetup:
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from train.trainer import TrainState

    dtype = jnp.bfloat16 if precision == "bf16" else jnp.float32
    tx = _optimizer(wl)
    graphdef, params, rest = _host_init(_model_ctor(wl, dtype, None), seed)
    graphdef_pmap = nnx.graphdef(nnx.eval_shape(_model_ctor(wl, dtype, AXIS)))
    # One compiled call builds the optimizer state and key (eager zeros_like would compile one
    # tiny program per parameter shape).
    state = jax.jit(lambda p, r: TrainState(step=jnp.zeros((), jnp.int32), params=p, model_state=r,
                                            opt_state=tx.init(p), key=jax.random.PRNGKey(seed ^ 0x5EED)))(params, rest)
    return _JaxSetup(wl, precision, dtype, tx, _preprocess(wl), graphdef, graphdef_pmap, jax.device_get(state),
                     _jax_settings(wl, precision))


def _peak_memory(device) -> int | None:
    try:
        stats = device.memory_stats()
    except Exception:  # noqa: BLE001 - backends without the call
        return None
    if not stats:
        return None
    return int(stats.get("peak_bytes_in_use", stats.get("bytes_in_use", 0))) or None


def _program_bytes(compiled) -> int | None:
    """Argument + output + temporary bytes of one compiled program (what it needs resident)."""
    try:
        m = compiled.memory_analysis()
        return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes)
    except Exception:  # noqa: BLE001 - not every backend reports it
        return None


def _aot(fn, *args, precision: str) -> tuple[Any, dict]:
    """Compile ahead of time under ``precision``'s matmul precision (the compiled program keeps it),
    timing tracing, lowering and XLA compilation separately."""
    import jax

    with jax.default_matmul_precision(MATMUL_PRECISION[precision]):
        t0 = time.perf_counter()
        if hasattr(fn, "trace"):
            traced = fn.trace(*args)
            t1 = time.perf_counter()
            lowered = traced.lower()
        else:  # jax.pmap has lower() but no trace()
            lowered = fn.lower(*args)
            t1 = time.perf_counter()
        t2 = time.perf_counter()
        compiled = lowered.compile()
        t3 = time.perf_counter()
    parts = {"trace_s": t1 - t0 if hasattr(fn, "trace") else None,
             "lower_s": t2 - t1 if hasattr(fn, "trace") else t1 - t0,
             "xla_compile_s": t3 - t2}
    return compiled, parts


def run_name(r: Record) -> str:
    """``cnn-fused-bf16-b256`` (``-d4`` after the mode on several devices): the --dump-hlo and --profile name."""
    return f"{r.suite}-{r.mode}{f'-d{r.devices}' if r.devices > 1 else ''}-{r.precision}-b{r.batch_size}"


@dataclass
class Artifacts:
    """``--dump-hlo`` and ``--profile``: where each JAX runner's optimised HLO and profile go (None: off)."""

    hlo_dir: Path | None = None
    profile_dir: Path | None = None
    profile_only: Sequence[str] = ("*",)    # fnmatch patterns of run names

    def save_hlo(self, rec: Record, compiled) -> None:
        if self.hlo_dir is None:
            return
        path = self.hlo_dir / f"{run_name(rec)}.hlo.txt"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(compiled.as_text())
            rec.extra["hlo"] = {"path": str(path), "bytes": path.stat().st_size}
        except Exception as e:  # noqa: BLE001 - a dump must not cost the measurement
            rec.extra["hlo"] = {"error": _err(e)}

    def profile(self, rec: Record, window: Callable[[], Any]) -> None:
        """After the timed windows: one more window under ``jax.profiler.trace``, into
        ``<profile_dir>/<run name>/`` (the trace of one window only keeps it small)."""
        name = run_name(rec)
        if self.profile_dir is None or not any(fnmatch.fnmatchcase(name, g) for g in self.profile_only):
            return
        import jax

        path = self.profile_dir / name
        try:
            with jax.profiler.trace(str(path)):
                window()
            files = [f for f in path.rglob("*") if f.is_file()]
            rec.extra["profile"] = {"path": str(path), "steps": rec.steps_per_window, "files": len(files),
                                    "bytes": sum(f.stat().st_size for f in files)}
        except Exception as e:  # noqa: BLE001
            rec.extra["profile"] = {"error": _err(e)}


def _jax_runner(rec: Record, exe, parts: dict, window: Callable[[], Any], dev, art: Artifacts) -> Runner:
    """The compiled runner's record (compile parts, program size, HLO dump) and its after-timing hook
    (peak device memory, the optional profile)."""
    rec.compile_s = sum(v for v in parts.values() if v)
    rec.extra.update({k: round(v, 4) for k, v in parts.items() if v is not None})
    rec.extra["program_bytes"] = _program_bytes(exe)
    art.save_hlo(rec, exe)

    def after(r):
        r.peak_memory_bytes = _peak_memory(dev)
        art.profile(r, window)
    return Runner(rec, window, after)


def jax_runner(s: _JaxSetup, mode: str, art: Artifacts = Artifacts()) -> Runner:
    """``fused`` (one call of K scanned steps) or ``step-loop`` (K Python calls of one jitted step)."""
    import jax

    from train.trainer import StepFns

    wl = s.wl
    dev = jax.local_devices()[0]
    fns = StepFns(s.graphdef, s.tx, s.preprocess)
    x, y = jax.device_put(wl.train_x, dev), jax.device_put(wl.train_y, dev)
    state = jax.device_put(s.host_state, dev)
    rec = Record(wl.suite, "jax", mode, s.precision, 1, wl.batch, steps_per_window=wl.steps, settings=s.settings)
    holder = [state]
    if mode == "fused":
        idx = jax.device_put(wl.idx, dev)
        exe, parts = _aot(jax.jit(fns.train_steps, donate_argnums=(0,)), state, x, y, idx, precision=s.precision)

        def window():
            holder[0], _ = exe(holder[0], x, y, idx)
            jax.block_until_ready(holder[0])
    else:
        # Same work as one scan iteration: gather the batch on device from an index vector.
        def one(st, x_all, y_all, i):
            return fns.train_step(st, x_all[i], y_all[i])
        idx_list = [jax.device_put(i, dev) for i in wl.idx]
        exe, parts = _aot(jax.jit(one, donate_argnums=(0,)), state, x, y, idx_list[0], precision=s.precision)

        def window():
            st = holder[0]
            for i in idx_list:
                st, _ = exe(st, x, y, i)
            holder[0] = st
            jax.block_until_ready(st)
    return _jax_runner(rec, exe, parts, window, dev, art)


def _put_replicated(tree, devices):
    """Host pytree -> arrays with a leading device axis, one copy per device (pmap's layout)."""
    import jax

    mesh = jax.sharding.Mesh(np.array(devices), (AXIS,))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(AXIS))

    def rep(a):
        a = np.asarray(a)
        return jax.make_array_from_callback((len(devices), *a.shape), sharding, lambda _: a[None])
    return jax.tree.map(rep, tree), sharding


def pmap_runner(s: _JaxSetup, n: int, art: Artifacts = Artifacts()) -> Runner:
    """The fused steps under ``jax.pmap`` on ``n`` devices, built here so n == 1 also takes the pmap path
    (``Trainer`` uses plain jit for one device)."""
    import jax

    from train.trainer import StepFns

    wl = s.wl
    devices = jax.local_devices()[:n]
    rec = Record(wl.suite, "jax", "pmap", s.precision, n, wl.batch, steps_per_window=wl.steps, settings=s.settings)
    fns = StepFns(s.graphdef_pmap, s.tx, s.preprocess, axis_name=AXIS)
    state, sharding = _put_replicated(s.host_state, devices)
    data, _ = _put_replicated({"x": wl.train_x, "y": wl.train_y}, devices)
    k, b = wl.idx.shape
    # Global batch B split into n contiguous column blocks: device d trains on B/n of the examples.
    idx = jax.device_put(np.ascontiguousarray(wl.idx.reshape(k, n, b // n).transpose(1, 0, 2)), sharding)
    pm = jax.pmap(fns.train_steps, axis_name=AXIS, devices=devices, donate_argnums=(0,))
    exe, parts = _aot(pm, state, data["x"], data["y"], idx, precision=s.precision)
    holder = [state]

    def window():
        holder[0], _ = exe(holder[0], data["x"], data["y"], idx)
        jax.block_until_ready(holder[0])

    return _jax_runner(rec, exe, parts, window, devices[0], art)


# Measured while building this benchmark (jax 0.10.2): XLA:CPU turns the CNN's convolutions into fast
# YNNPACK fusions in a plain jitted step, but not inside a lax.scan body; an unrolled scan gets them back.
CPU_SCAN_CONV_NOTE = ("XLA:CPU leaves convolutions inside lax.scan off its YNNPACK path: ~3x slower per "
                      "step than step-loop (an unrolled scan matches step-loop)")


def jax_runners(wl: Workload, *, precisions: Sequence[str], modes: Sequence[str], devices: Sequence[int],
                seed: int, skip_pmap: str = "", budget: Budget | None = None,
                art: Artifacts = Artifacts()) -> list[Runner | Record]:
    import jax

    n_local = jax.local_device_count()
    cpu_cnn = wl.suite == "cnn" and jax.devices()[0].platform == "cpu"
    out: list[Runner | Record] = []
    for precision in precisions:
        if precision == "bf16" and wl.suite == "toy":
            continue  # a 2-20-2 MLP has nothing for bf16 to speed up
        # Set up on first use, inside prepare: a failure, or a spent --time-budget, skips it like a runner.
        setup = functools.cache(functools.partial(_jax_setup, wl, precision, seed))
        for mode in ("step-loop", "fused"):
            if mode in modes:
                out.append(prepare(lambda m=mode, su=setup: jax_runner(su(), m, art), wl, "jax", mode, precision,
                                   budget=budget))
        if "pmap" not in modes:
            continue
        for n in devices:
            why = (skip_pmap or (f"{n} devices asked for, {n_local} exist; on CPU start the process with "
                                 f"XLA_FLAGS=--xla_force_host_platform_device_count={n}" if n > n_local else "")
                   or (f"batch {wl.batch} is not divisible by {n} devices" if wl.batch % n else ""))
            if why:
                out.append(skipped(wl.suite, "jax", "pmap", why, precision=precision, devices=n, batch_size=wl.batch))
            else:
                out.append(prepare(lambda n=n, su=setup: pmap_runner(su(), n, art), wl, "jax", "pmap", precision, n,
                                   budget))
    for item in out:
        if cpu_cnn and isinstance(item, Runner) and item.record.mode in ("fused", "pmap"):
            item.record.note = CPU_SCAN_CONV_NOTE
    return out


# ---------------------------------------------------------------------------------------------------
# PyTorch
# ---------------------------------------------------------------------------------------------------

def import_torch():
    """``torch`` or None: PyTorch is an optional extra.

    Before the first import, OMP_WAIT_POLICY defaults to PASSIVE (unless the user set it).
    PyTorch's OpenMP threads otherwise spin while waiting; on a machine shared with other
    jobs, where the spinning thread's core is taken, a tiny MLP step measured 24 ms instead
    of 0.25 ms. Passive waiting costs nothing measurable when the cores are free.
    """
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import torch
    except Exception:  # noqa: BLE001 - ImportError, or a broken install
        return None
    return torch


def torch_runners(wl: Workload, *, precisions: Sequence[str], modes: Sequence[str], seed: int,
                  compile_skip: Callable[[Workload, str], str] = lambda wl, p: "",
                  compile_mode: str | None = None, budget: Budget | None = None) -> list[Runner | Record]:
    """PyTorch eager and compiled, with PyTorch's own speed recipe where the device has it (see
    ``torch_models.configure_backend``); ``compile_skip(wl, precision)`` says why a compiled
    configuration is left out ("" to compile it); ``compile_mode`` defaults to the device's
    ``torch_models.COMPILE_MODE``."""
    torch = import_torch()
    if torch is None:
        return [skipped(wl.suite, "torch", m, "PyTorch not installed (optional extra: pip install .[torch])",
                        batch_size=wl.batch) for m in TORCH_MODES if m in modes]
    from train import torch_models

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.type == "cuda"
    backend = torch_models.configure_backend(device.type)
    compile_mode = compile_mode or torch_models.COMPILE_MODE[device.type]
    channels_last = cuda and wl.suite == "cnn"   # cuDNN's fast layout; oneDNN on CPU is left as is
    xt = torch.as_tensor(wl.train_x).to(device)
    if wl.suite == "cnn":
        # PyTorch's modules take NCHW; the permuted view of the NHWC images is channels_last in memory.
        xt = xt.permute(0, 3, 1, 2) if channels_last else xt.permute(0, 3, 1, 2).contiguous()
    yt = torch.as_tensor(wl.train_y).long().to(device)
    idx = [torch.as_tensor(i).long().to(device) for i in wl.idx]
    pre = torch_models.make_preprocess(wl.suite, mean=wl.mean, std=wl.std, device=device, channels_last=channels_last)

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def runner(mode, precision) -> Runner:
        cm = compile_mode if mode == "compiled" else None
        # TF32 (CUDA only; off for fp32) is a process-wide switch that eager kernels read at each launch and
        # torch.compile bakes in: set before building and compiling, and again at the start of each window.
        tf32 = precision != "fp32" if cuda else None
        use_tf32 = functools.partial(torch_models.set_tf32, tf32) if cuda else (lambda: None)
        use_tf32()
        model, opt, fused = torch_models.build(wl.suite, hidden=wl.hidden, lr=wl.lr, seed=seed, device=device,
                                               channels_last=channels_last)
        step = torch_models.make_train_step(model, opt, pre, clip_norm=10.0 if wl.suite == "rnn" else None,
                                            device_type=device.type, compile_mode=cm,
                                            autocast_dtype=torch.bfloat16 if precision == "bf16" else None)
        settings = {"channels_last": channels_last, **backend, "tf32": tf32, "fused_adamw": fused,
                    "autocast": "bf16" if precision == "bf16" else None, "compile_mode": cm}
        rec = Record(wl.suite, "torch", mode, precision, 1, wl.batch, steps_per_window=wl.steps, settings=settings,
                     extra={"threads": torch.get_num_threads(), "device": str(device),
                            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")})
        if cm:
            rec.note = ("compile_s: first call; inductor reuses kernels from its on-disk cache "
                        "(TORCHINDUCTOR_CACHE_DIR), so a first-ever compile takes longer")
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        before = torch_models.compile_counters()
        t = time.perf_counter()
        step(xt[idx[0]], yt[idx[0]])   # eager: lazy initialisation; compiled: graph capture + inductor
        sync()
        rec.compile_s = time.perf_counter() - t
        if cm:   # graph breaks or skipped CUDA graphs would make "compiled" mean less than it says
            rec.extra["compile_counters"] = {k: v - before.get(k, 0) for k, v in torch_models.compile_counters().items()}

        def window():
            use_tf32()
            for i in idx:
                step(xt[i], yt[i])
            sync()

        def after(r):
            if cuda:
                r.peak_memory_bytes = int(torch.cuda.max_memory_allocated())
        return Runner(rec, window, after)

    return [(skipped(wl.suite, "torch", mode, why, precision=precision, batch_size=wl.batch) if why else
             prepare(functools.partial(runner, mode, precision), wl, "torch", mode, precision, budget=budget))
            for precision in precisions if not (precision == "bf16" and wl.suite == "toy")
            for mode in TORCH_MODES if mode in modes
            for why in [compile_skip(wl, precision) if mode == "compiled" else ""]]


# ---------------------------------------------------------------------------------------------------
# The toy whole run (fresh processes, the project's own code path)
# ---------------------------------------------------------------------------------------------------

def _whole_run_child(framework: str, cache_dir: str | None, steps: int) -> dict:
    """Runs in a fresh interpreter: time mlp_toy's build_backends + the training loop (1,500 steps)."""
    t0 = time.perf_counter()
    import jax
    import jax.monitoring

    if cache_dir:
        # Cache every program, however small or quick to compile: the toy run's programs all are.
        jax.config.update("jax_compilation_cache_dir", cache_dir)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    events: dict[str, list[float]] = {}
    per_program: dict[str, dict[str, float]] = {}   # fun_name -> {trace, lower, compile} seconds
    hits = []

    def on_duration(name, secs, fun_name="?", **_):
        events.setdefault(name, []).append(secs)
        part = {"jaxpr_trace_duration": "trace", "jaxpr_to_mlir_module_duration": "lower",
                "backend_compile_duration": "compile"}.get(name.rsplit("/", 1)[-1])
        if part:
            d = per_program.setdefault(str(fun_name), {})
            d[part] = d.get(part, 0.0) + secs
    jax.monitoring.register_event_duration_secs_listener(on_duration)
    jax.monitoring.register_event_listener(
        lambda name, **_: hits.append(name) if name.endswith("cache_hits") else None)
    from data.toy import make_toy_data
    from train.experiments import mlp_toy
    from train.loop import train_loop
    t1 = time.perf_counter()
    cfg = mlp_toy.ToyConfig(framework=framework, steps=steps)
    data = make_toy_data(cfg.dataset, n_samples=cfg.samples, noise=cfg.noise, test_fraction=cfg.test_fraction,
                         seed=cfg.seed)
    periods = mlp_toy.schedule(cfg, len(data.train_y))
    t2 = time.perf_counter()
    backend = mlp_toy.build_backends(cfg, data)[framework]
    t3 = time.perf_counter()
    # Time inside the backend's train and evaluate calls (dispatch, compute, metrics to host; period
    # calls both); the rest of the loop is its bookkeeping (metrics.jsonl written after every
    # evaluation, NaN checks, progress bar).
    in_period = [0.0]

    def timed(fn):
        def call(*a):
            t = time.perf_counter()
            try:
                return fn(*a)
            finally:
                in_period[0] += time.perf_counter() - t
        return call
    backend.train, backend.evaluate = timed(backend.train), timed(backend.evaluate)
    with tempfile.TemporaryDirectory(prefix="bench-run-") as run_dir:
        # The CLI's loop, metrics.jsonl written after every evaluation; checkpoints off: this
        # times training, and a checkpoint's cost depends on the disk, not the framework.
        log, _ = train_loop(backend, periods, Path(run_dir), checkpoints=False, progress=False)
        rows = log.rows
    t4 = time.perf_counter()
    ev = lambda suffix: sum(sum(v) for k, v in events.items() if k.endswith(suffix))
    n_compiles = sum(len(v) for k, v in events.items() if k.endswith("backend_compile_duration"))
    test_acc = [r["accuracy"] for r in rows if r["split"] == "test"]
    return {"framework": framework, "steps": steps, "startup_s": t1 - t0, "data_s": t2 - t1,
            "build_s": t3 - t2, "run_s": t4 - t3, "total_s": t4 - t2,
            "in_period_s": in_period[0], "loop_overhead_s": (t4 - t3) - in_period[0],
            "trainer_compile_s": float(backend.compile_time_s),
            "trace_s": ev("jaxpr_trace_duration"), "lower_s": ev("jaxpr_to_mlir_module_duration"),
            "backend_compile_s": ev("backend_compile_duration"), "programs_compiled": n_compiles,
            "cache_hits": len(hits), "final_test_accuracy": test_acc[-1] if test_acc else None,
            # The costliest programs first: where cold-start time goes.
            "programs": sorted(([k, {p: round(v, 4) for p, v in d.items()}] for k, d in per_program.items()),
                               key=lambda kv: -sum(kv[1].values()))[:8]}


def whole_run(framework: str, cache_dir: str | None, steps: int = WHOLE_RUN_STEPS, timeout: float = 300) -> dict:
    """Run ``_whole_run_child`` in a fresh Python process (so nothing is compiled or imported yet)."""
    cmd = [sys.executable, "-m", "train.bench", "--whole-run-child", framework, "--steps", str(steps)]
    if cache_dir:
        cmd += ["--cache-dir", cache_dir]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"whole-run child failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_whole_run(frameworks: Sequence[str], *, steps: int, log=print) -> list[Record]:
    out = []
    batch = 30

    def record(mode, r, note):
        rec = Record("toy", r["framework"], mode, "fp32", 1, batch, compile_s=r["backend_compile_s"] or None,
                     step_s=r["total_s"] / r["steps"], examples_per_s=r["steps"] * batch / r["total_s"],
                     steps_per_window=r["steps"], windows=1, total_s=r["total_s"], note=note,
                     extra={k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items() if k != "framework"})
        log(_line(rec))
        return rec

    note = (f"fresh process: mlp_toy.build_backends + train_loop (no checkpoints), {steps} steps, "
            f"evaluation every 30")
    if "numpy" in frameworks:
        try:
            out.append(record("whole-run", whole_run("numpy", None, steps), note))
        except Exception as e:  # noqa: BLE001 - report, keep benchmarking
            out.append(skipped("toy", "numpy", "whole-run", f"failed: {e}", batch_size=batch))
    if "jax" in frameworks:
        with tempfile.TemporaryDirectory(prefix="jax-cache-") as cache:
            try:
                out.append(record("whole-run-cold", whole_run("jax", cache, steps),
                                  note + "; empty persistent compilation cache (cold)"))
                out.append(record("whole-run-warm", whole_run("jax", cache, steps),
                                  note + "; persistent compilation cache filled by the cold run (warm)"))
            except Exception as e:  # noqa: BLE001
                out.append(skipped("toy", "jax", "whole-run-cold", f"failed: {e}", batch_size=batch))
    return out


# ---------------------------------------------------------------------------------------------------
# Report: ratios, checks, table, chart
# ---------------------------------------------------------------------------------------------------

def _line(r: Record) -> str:
    head = f"{r.suite:9s} {r.framework:5s} {r.mode:14s} {r.precision:4s} d{r.devices}"
    if r.skipped:
        return f"{head}  skipped: {r.note}"
    comp = f"compile {r.compile_s:.3f} s" if r.compile_s is not None else ""
    tot = f"  total {r.total_s:.3f} s" if r.total_s is not None else ""
    return f"{head}  {_fmt_time(r.step_s)}/step  {r.examples_per_s:,.0f} ex/s  {comp}{tot}"


def _fmt_time(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:.1f} us"
    if s < 1:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


def _steady(records: list[Record]) -> list[Record]:
    return [r for r in records if not r.skipped and r.step_s and not r.mode.startswith("whole-run")]


def _find(records, suite, framework, mode, precision="fp32", devices=1, batch: int | None = None) -> Record | None:
    """The first measured record of this cell (at ``batch``, or at any batch when None)."""
    for r in _steady(records):
        if (r.suite, r.framework, r.mode, r.precision, r.devices) == (suite, framework, mode, precision, devices) \
                and batch in (None, r.batch_size):
            return r
    return None


def baseline_for(records: list[Record], suite: str, precision: str, gpu: bool, batch: int | None = None) -> Record | None:
    """NumPy on CPU (where a NumPy model exists), else PyTorch eager; on a GPU, PyTorch eager."""
    order = [("torch", "eager")] if gpu else [("numpy", "step"), ("torch", "eager")]
    for fw, mode in order:
        for prec in (precision, "fp32"):
            r = _find(records, suite, fw, mode, prec, batch=batch)
            if r:
                return r
    return None


def best_torch(records: list[Record], suite: str, batch: int) -> Record | None:
    """The fastest PyTorch record (any mode and precision) of ``suite`` at ``batch``."""
    rs = [r for r in _steady(records) if (r.suite, r.framework, r.batch_size) == (suite, "torch", batch)]
    return max(rs, key=lambda r: r.examples_per_s, default=None)


def paired_ratio(base: Record, other: Record) -> float:
    """How many times faster ``other`` is than ``base``: the median over rounds of the ratio of their
    per-step window times. Windows of one suite run interleaved (round r of every runner back to
    back), so pairing them by round cancels most of the drift in machine load; records with
    different window counts fall back to the ratio of medians."""
    b, o = base.window_step_s, other.window_step_s
    if b and len(b) == len(o) and all(v > 0 for v in o):
        return float(statistics.median(x / y for x, y in zip(b, o)))
    return base.step_s / other.step_s


def compute_ratios(records: list[Record], gpu: bool) -> dict:
    """Per suite, precision and batch: speed vs the baseline of every record, and pmap(1 device)/jit."""
    out: dict[str, dict] = {}
    for r in _steady(records):
        base = baseline_for(records, r.suite, r.precision, gpu, r.batch_size)
        key = f"{r.suite}/{r.precision}/b{r.batch_size}"
        d = out.setdefault(key, {"baseline": f"{base.framework} {base.mode}" if base else None, "speedup": {}})
        if base:
            r.extra["speedup_vs_baseline"] = round(paired_ratio(base, r), 3)
            d["speedup"][f"{r.framework} {r.mode} d{r.devices}"] = r.extra["speedup_vs_baseline"]
        same = functools.partial(_find, records, r.suite, precision=r.precision, batch=r.batch_size)
        if r.framework == "jax" and r.mode == "pmap" and r.devices == 1:
            jit = same("jax", "fused")
            if jit:
                # Throughput of the pmap path as a fraction of plain jit's (same fused steps, 1 device).
                r.extra["pmap_vs_jit"] = d["pmap_vs_jit"] = round(paired_ratio(jit, r), 3)
                d["pmap_vs_jit_of_medians"] = round(jit.step_s / r.step_s, 3)
        if r.framework == "jax" and r.mode == "pmap" and r.devices > 1:
            one = same("jax", "pmap", devices=1)
            if one:
                # Data-parallel scaling: throughput on N devices over throughput on one (same global batch).
                d.setdefault("pmap_scaling", {})[str(r.devices)] = round(paired_ratio(one, r), 3)
        if r.framework == "jax" and r.mode == "fused":
            loop = same("jax", "step-loop")
            if loop:
                d["fused_vs_step_loop"] = round(paired_ratio(loop, r), 3)
    return out


def batch_summary(records: list[Record]) -> list[dict]:
    """Per suite, framework, mode, precision and devices: throughput at the recipe batch (None when
    not measured) and at the measured batch that maximises it."""
    groups: dict[tuple, list[Record]] = {}
    for r in _steady(records):
        groups.setdefault((r.suite, r.framework, r.mode, r.precision, r.devices), []).append(r)
    out = []
    for (suite, fw, mode, prec, dev), rs in groups.items():
        best = max(rs, key=lambda r: r.examples_per_s)
        recipe = next((r for r in rs if r.batch_size == RECIPE_BATCH[suite]), None)
        out.append({"suite": suite, "framework": fw, "mode": mode, "precision": prec, "devices": dev,
                    "batches": sorted(r.batch_size for r in rs), "recipe_batch": RECIPE_BATCH[suite],
                    "recipe_examples_per_s": recipe.examples_per_s if recipe else None,
                    "best_batch": best.batch_size, "best_examples_per_s": best.examples_per_s})
    return out


# GPU targets (issue 11): JAX fused bf16 examples/s, and for the CNN its speed over the best PyTorch
# record measured at the same batch, each at the recipe batch and at the throughput-maximising batch.
GPU_TARGETS = {"cnn": (200_000, 3.0), "rnn": (500_000, None)}


def _gpu_checks(records: list[Record], add) -> None:
    for suite, (target, vs_torch) in GPU_TARGETS.items():
        rs = [r for r in _steady(records) if (r.suite, r.framework, r.mode, r.precision, r.devices)
              == (suite, "jax", "fused", "bf16", 1)]
        if not rs:
            continue
        best = max(rs, key=lambda r: r.examples_per_s)
        recipe = next((r for r in rs if r.batch_size == RECIPE_BATCH[suite]), None)
        for r in [x for x in (recipe, best if best is not recipe else None) if x]:   # once if recipe is best
            which = "+".join(n for n, x in (("recipe", recipe), ("best", best)) if x is r)
            at = f"at batch {r.batch_size} ({which})"
            add(f"{suite}: JAX fused bf16 examples/s {at}", r.examples_per_s, f">= {target:,}",
                r.examples_per_s >= target)
            if vs_torch is None:
                continue
            t = best_torch(records, suite, r.batch_size)
            if t is None:
                add(f"{suite}: JAX fused bf16 / best PyTorch {at}: no PyTorch record at this batch", None,
                    f">= {vs_torch:g}", False)
                continue
            v = paired_ratio(t, r)
            add(f"{suite}: JAX fused bf16 / best PyTorch (torch {t.mode} {t.precision}, "
                f"{t.examples_per_s:,.0f}/s) {at}", v, f">= {vs_torch:g}", v >= vs_torch)


def acceptance_checks(records: list[Record], gpu: bool) -> list[dict]:
    """The issue's targets, evaluated from this run's numbers (absent measurements are left out,
    except a missing PyTorch record that a GPU speed ratio needs: that check fails, visibly)."""
    checks = []

    def add(name, value, target, ok):
        checks.append({"check": name, "value": None if value is None else round(value, 4), "target": target,
                       "pass": bool(ok)})

    np_toy, jf_toy = _find(records, "toy", "numpy", "step"), _find(records, "toy", "jax", "fused")
    if np_toy and jf_toy:
        v = paired_ratio(np_toy, jf_toy)
        add("toy: JAX fused speed / NumPy", v, ">= 5", v >= 5)
    for r in records:
        if r.suite == "toy" and r.framework == "jax" and r.mode.startswith("whole-run") and r.total_s:
            add(f"toy: JAX {r.mode} (build + 1,500 steps + compile)", r.total_s, "< 1 s", r.total_s < 1)
    jf = _find(records, "mlp-cifar", "jax", "fused")
    for fw, mode in (("torch", "eager"), ("numpy", "step")):
        other = jf and _find(records, "mlp-cifar", fw, mode, batch=jf.batch_size)
        if other:
            v = paired_ratio(other, jf)
            add(f"mlp-cifar: JAX fused speed / {fw} {mode}", v, "> 1", v > 1)
    pm = jf and _find(records, "mlp-cifar", "jax", "pmap", batch=jf.batch_size)
    if pm:
        v = paired_ratio(jf, pm)
        add("mlp-cifar: pmap (1 device) throughput / jit", v, ">= 0.90", v >= 0.90)
    if gpu:
        _gpu_checks(records, add)
    return checks


# Short names for the settings column: a key's text, or for non-boolean values "text value".
_SETTING_TEXT = {"channels_last": "channels_last", "cudnn_benchmark": "cudnn.benchmark", "fused_adamw": "fused AdamW",
                 "tf32": "TF32", "autocast": "autocast", "compile_mode": "compile", "matmul_precision": "matmul",
                 "scan_unroll": "unroll"}


def settings_text(settings: dict) -> str:
    """``{"channels_last": True, "fused_adamw": False, "compile_mode": "default"}`` -> "channels_last,
    no fused AdamW, compile default": true flags by name, false ones only where they are a choice
    someone would look for (fused AdamW, TF32), absent or None ones not at all."""
    parts = []
    for k, v in settings.items():
        name = _SETTING_TEXT.get(k, k)
        if v is True:
            parts.append(name)
        elif v is False and k in ("fused_adamw", "tf32"):
            parts.append(f"no {name}")
        elif v not in (None, False):
            parts.append(f"{name} {v}")
    return ", ".join(parts)


def markdown(records: list[Record], ratios: dict, checks: list[dict], machine: dict,
             batches: list[dict] | None = None) -> str:
    title = (f"# Training-step benchmark ({machine.get('platform')}, {machine.get('device_kind')}, "
             f"{machine.get('cpu_count')} CPU cores, load average {_load(machine)})")
    intro = ("step = median over timed windows (device synchronised inside each window); the runners of a suite "
             "and batch are timed interleaved, round by round, and speedup = median over rounds of baseline window "
             "time / this window time (baseline: NumPy on CPU where it exists, else PyTorch eager; on a GPU, "
             "PyTorch eager). Precision: fp32 is full fp32 in both frameworks (JAX compiled under matmul precision "
             "highest, PyTorch with TF32 off); tf32 is fp32 storage with TF32 matmuls and convolutions (JAX's "
             "default on a GPU, PyTorch with TF32 on); bf16 is bf16 compute (bf16 JAX models, PyTorch bf16 autocast "
             "with TF32 on). On a CPU, tf32 computes what fp32 does. Whole-run rows: total seconds for the "
             "1,500-step toy run in a fresh process.")
    lines = [title, "", intro, "",
             "| suite | framework | mode | precision | devices | batch | compile (s) | step | examples/s | speedup "
             "| settings | note |", "|---|---|---|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in records:
        head = f"| {r.suite} | {r.framework} | {r.mode} | {r.precision} | {r.devices} | {r.batch_size} "
        if r.skipped:
            lines.append(head + f"| - | - | - | - | | skipped: {r.note} |")
            continue
        comp = f"{r.compile_s:.3f}" if r.compile_s is not None else "-"
        step = f"total {r.total_s:.3f} s" if r.total_s is not None else _fmt_time(r.step_s)
        sp = r.extra.get("speedup_vs_baseline")
        lines.append(head + f"| {comp} | {step} | {r.examples_per_s:,.0f} | {'' if sp is None else f'{sp:.2f}x'} "
                     f"| {settings_text(r.settings)} | {_note(r)} |")
    lines += ["", "| suite/precision/batch | baseline | pmap/jit (1 device) | fused/step-loop | pmap N devices / 1 |",
              "|---|---|---:|---:|---|"]
    for key, d in ratios.items():
        pj, fs = d.get("pmap_vs_jit"), d.get("fused_vs_step_loop")
        sc = ", ".join(f"{n}: {v:.2f}x" for n, v in d.get("pmap_scaling", {}).items()) or "-"
        lines.append(f"| {key} | {d['baseline'] or '-'} | {'-' if pj is None else f'{pj:.3f}'} | "
                     f"{'-' if fs is None else f'{fs:.2f}x'} | {sc} |")
    if batches:
        lines += ["", "| suite | framework | mode | precision | devices | batches measured | examples/s at the recipe "
                  "batch | best batch | examples/s at the best batch |", "|---|---|---|---|---:|---|---:|---:|---:|"]
        for b in batches:
            rec = b["recipe_examples_per_s"]
            lines.append(f"| {b['suite']} | {b['framework']} | {b['mode']} | {b['precision']} | {b['devices']} | "
                         f"{', '.join(map(str, b['batches']))} | {'-' if rec is None else f'{rec:,.0f}'} "
                         f"({b['recipe_batch']}) | {b['best_batch']} | {b['best_examples_per_s']:,.0f} |")
    if checks:
        lines += ["", "| check | value | target | pass |", "|---|---:|---|---|"]
        for c in checks:
            lines.append(f"| {c['check']} | {c['value']} | {c['target']} | {'yes' if c['pass'] else 'NO'} |")
    return "\n".join(lines) + "\n"


def _note(r: Record) -> str:
    e = r.extra
    if r.mode.startswith("whole-run") and r.framework == "jax":
        return (f"build {e['build_s']:.2f} + run {e['run_s']:.2f} s (loop bookkeeping {e['loop_overhead_s']:.2f}); "
                f"trace {e['trace_s']:.2f}, lower {e['lower_s']:.2f}, XLA {e['backend_compile_s']:.2f} s over "
                f"{e['programs_compiled']} programs, {e['cache_hits']} cache hits")
    if r.mode == "whole-run":
        return f"build {e['build_s']:.2f} + run {e['run_s']:.2f} s (loop bookkeeping {e['loop_overhead_s']:.2f})"
    extras = [f"pmap/jit = {e['pmap_vs_jit']:.2f}"] if "pmap_vs_jit" in e else []
    extras += [f"torch.compile: {', '.join(f'{k} {v}' for k, v in e['compile_counters'].items())}"] \
        if e.get("compile_counters") else []
    return "; ".join([r.note, *extras] if r.note else extras)


def _load(machine: dict) -> str:
    a, b = machine.get("loadavg_start"), machine.get("loadavg_end")
    return f"{a[0]:.1f} at start, {b[0]:.1f} at end" if a and b else "unknown"


def plot(records: list[Record], path: Path, gpu: bool) -> None:
    """One panel per suite: speed relative to the suite's baseline, log scale, 1 = baseline."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    suites = [s for s in SUITES if any(r.suite == s and "speedup_vs_baseline" in r.extra for r in _steady(records))]
    fig, axes = plt.subplots(1, max(1, len(suites)), figsize=(4.2 * max(1, len(suites)), 4.2), squeeze=False)
    colors = {"numpy": "tab:gray", "jax": "tab:blue", "torch": "tab:orange"}
    for ax, suite in zip(axes[0], suites):
        rows = [r for r in _steady(records) if r.suite == suite and "speedup_vs_baseline" in r.extra]
        batches = sorted({r.batch_size for r in rows})
        labels = [f"{r.framework} {r.mode}\n{r.precision} d{r.devices}" + (f" b{r.batch_size}" if len(batches) > 1 else "")
                  for r in rows]
        vals = [r.extra["speedup_vs_baseline"] for r in rows]
        # Bars grow from 1x (the baseline): up when faster, down when slower, on a log scale.
        bars = ax.bar(range(len(rows)), [v - 1.0 for v in vals], bottom=1.0,
                      color=[colors.get(r.framework, "k") for r in rows])
        for b, v in zip(bars, vals):
            ax.annotate(f"{v:.2g}x", (b.get_x() + b.get_width() / 2, v), ha="center",
                        va="bottom" if v >= 1 else "top", fontsize=7)
        ax.axhline(1.0, color="k", lw=0.8, ls="--")
        ax.set_yscale("log")
        ax.set_ylim(min([*vals, 1.0]) / 1.6, max([*vals, 1.0]) * 1.6)
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}x"))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(
            lambda v, _: f"{v:g}x" if v > 0 and round(v / 10 ** np.floor(np.log10(v)), 6) in (2, 5) else ""))
        ax.set_xticks(range(len(rows)), labels, rotation=60, ha="right", fontsize=7)
        base = baseline_for(records, suite, "fp32", gpu)
        ax.set_title(f"{suite} (batch {', '.join(map(str, batches))}; each vs the baseline at its batch)", fontsize=9)
        ax.set_ylabel(f"speed vs {base.framework} {base.mode} (x)" if base else "speed (x)")
        ax.grid(axis="y", alpha=0.3, which="both")
    if not suites:
        axes[0][0].text(0.5, 0.5, "no baseline measured", ha="center", va="center")
        axes[0][0].set_axis_off()
    fig.suptitle("Training-step speed relative to " + ("PyTorch eager" if gpu else "NumPy (or PyTorch eager)"))
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def machine_info() -> dict:
    import jax

    from train.results import device_info

    info = device_info()
    info.update({"cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                 "python": sys.version.split()[0], "xla_flags": os.environ.get("XLA_FLAGS", ""),
                 # JAX preallocates most of a GPU's memory unless told not to: what PyTorch had left.
                 **{k.lower(): os.environ.get(k) for k in ("XLA_PYTHON_CLIENT_PREALLOCATE",
                                                           "XLA_PYTHON_CLIENT_MEM_FRACTION")}})
    stats = _peak_memory(jax.local_devices()[0])
    info["memory_stats_available"] = stats is not None
    return info


# ---------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------

def _csv(choices: Sequence[str] | None = None):
    def parse(text: str) -> list[str]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        if choices is not None:
            bad = [t for t in items if t not in choices]
            if bad:
                raise argparse.ArgumentTypeError(f"{', '.join(bad)} not among {', '.join(choices)}")
        if not items:
            raise argparse.ArgumentTypeError("empty list")
        return items
    return parse


def _int_csv(text: str) -> list[int]:
    try:
        vals = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not vals or any(v < 1 for v in vals):
        raise argparse.ArgumentTypeError(f"device counts must be positive, got {text!r}")
    return vals


def _per_suite(value: Callable[[str], Any], what: str):
    """Parser of ``--batch-sizes`` and ``--precision``: ``"256,cnn:1024"`` -> ``[(None, 256), ("cnn", 1024)]``,
    each item for every suite or for one; ``value`` converts an item's value, None if it is not one."""
    def parse(text: str) -> list[tuple[str | None, Any]]:
        out = []
        for tok in (t.strip() for t in text.split(",") if t.strip()):
            suite, _, v = tok.rpartition(":")
            if suite and suite not in SUITES:
                raise argparse.ArgumentTypeError(f"unknown suite {suite!r} in {tok!r}; choose from {', '.join(SUITES)}")
            if value(v) is None:
                raise argparse.ArgumentTypeError(f"{what}, got {tok!r}")
            out.append((suite or None, value(v)))
        if not out:
            raise argparse.ArgumentTypeError("empty list")
        return out
    return parse


_batch_sizes = _per_suite(lambda v: int(v) if v.isdigit() and int(v) > 0 else None,
                          "batch sizes must be positive integers")
_precisions = _per_suite(lambda v: v if v in (*PRECISIONS, "auto") else None,
                         f"precisions are {', '.join(PRECISIONS)} or auto")


def suite_batches(suite: str, spec: Sequence[tuple[str | None, int]]) -> list[int | None]:
    """The batch sizes to run ``suite`` at: the ``--batch-sizes`` items for it or for every suite, in
    order, without repeats; ``[None]`` (the suite's default batch) when none applies."""
    return list(dict.fromkeys(b for s, b in spec if s in (None, suite))) or [None]


def resolve_precisions(spec: Sequence[tuple[str | None, str]], gpu: bool, suite: str | None = None) -> list[str]:
    """The ``--precision`` items for ``suite`` (None: for any suite), in the order fp32, tf32, bf16;
    ``auto`` is fp32 on CPU, tf32 and bf16 on a GPU."""
    want = {p for s, p in spec if suite is None or s in (None, suite)}
    auto = ("tf32", "bf16") if gpu else ("fp32",)
    return [p for p in PRECISIONS if p in want or ("auto" in want and p in auto)]


def run_precisions(suite: str, batch: int, precisions: Sequence[str], sweep: Sequence[str] | None) -> list[str]:
    """Every selected precision at the suite's recipe batch; at other batches those in ``sweep``
    (``--sweep-precision``; None: all)."""
    return [p for p in precisions if batch == RECIPE_BATCH[suite] or sweep is None or p in sweep]


def compile_policy(choice: str, *, gpu: bool, quick: bool) -> Callable[[Workload, str], str]:
    """``--torch-compile`` as ``(workload, precision) -> why its compiled runner is skipped`` ("" to compile).

    ``auto`` is ``recipe-bf16`` on a GPU (inductor compiles for tens of seconds per model, precision and
    batch there, and bf16 is PyTorch's fastest configuration), ``off`` under --quick on CPU, else ``on``.
    """
    if choice == "auto":
        choice = "recipe-bf16" if gpu else ("off" if quick else "on")
        if choice == "off":
            return lambda wl, p: ("torch.compile skipped under --quick on CPU: inductor compiles for tens of "
                                  "seconds per model here; run without --quick or with --torch-compile on")
    if choice == "off":
        return lambda wl, p: "torch.compile off (--torch-compile off)"
    if choice == "recipe-bf16":
        return lambda wl, p: "" if (p, wl.batch) == ("bf16", RECIPE_BATCH[wl.suite]) else (
            f"torch.compile only for bf16 at the recipe batch {RECIPE_BATCH[wl.suite]} (--torch-compile "
            f"recipe-bf16, the GPU default): inductor compiles for tens of seconds per model, precision and batch; "
            f"--torch-compile on compiles every configuration")
    return lambda wl, p: ""


def add_parser(subparsers) -> None:
    """Register ``bench`` on the CLI's sub-parsers."""
    p = subparsers.add_parser(
        "bench", help="training-step speed: NumPy vs JAX (step loop, fused, pmap) vs PyTorch",
        description="Times compile and steady-state training steps of each model in NumPy, JAX and PyTorch "
                    "and writes <out>/bench/bench.json, bench.md and bench.png. For N simulated CPU devices "
                    "start the process with XLA_FLAGS=--xla_force_host_platform_device_count=N.")
    p.add_argument("--suite", type=_csv(SUITES), default=list(SUITES),
                   help=f"comma-separated suites from {', '.join(SUITES)} (default: all)")
    p.add_argument("--frameworks", type=_csv(FRAMEWORKS), default=list(FRAMEWORKS),
                   help="comma-separated frameworks from numpy, jax, torch (default: all; torch is skipped "
                        "with a note when not installed)")
    p.add_argument("--modes", type=_csv(MODES), default=list(MODES),
                   help=f"comma-separated modes from {', '.join(MODES)} (default: all)")
    p.add_argument("--devices", type=_int_csv, default=None,
                   help="comma-separated device counts for the pmap mode, e.g. 1,2,4 (default: 1 and all local devices)")
    p.add_argument("--precision", type=_precisions, default=[(None, "auto")],
                   help="comma-separated fp32 (full fp32), tf32 (fp32 with TF32 matmuls and convolutions on a GPU), "
                        "bf16, or auto: fp32 on CPU (where tf32 computes what fp32 does and bf16 is emulated), "
                        "tf32 and bf16 on a GPU; each for every suite, or SUITE:PRECISION for one, e.g. "
                        "tf32,bf16,rnn:fp32 (default: auto)")
    p.add_argument("--batch-size", type=int, default=None, help="override every selected suite's batch size")
    p.add_argument("--batch-sizes", type=_batch_sizes, default=None,
                   help="comma-separated batch sizes to run, each B (every suite) or SUITE:B (that suite), e.g. "
                        "cnn:256,cnn:1024,rnn:128,rnn:4096; a suite with none runs at its default batch. The "
                        "summary reports each configuration at the recipe batch and at its best batch")
    p.add_argument("--sweep-precision", type=_csv(PRECISIONS), default=None,
                   help="precisions run at batch sizes other than the recipe's (default: all of --precision)")
    p.add_argument("--profile", default=None, metavar="DIR",
                   help="after timing, trace one more window of each timed JAX runner with jax.profiler into "
                        "DIR/<suite>-<mode>-<precision>-b<batch>/ (default: off)")
    p.add_argument("--profile-only", type=_csv(), default=["*"], metavar="GLOBS",
                   help="comma-separated patterns of the runs --profile traces, e.g. cnn-fused-bf16-b256,rnn-*-b128 "
                        "(default: all)")
    p.add_argument("--dump-hlo", default=None, metavar="DIR",
                   help="write each compiled JAX runner's optimised HLO to "
                        "DIR/<suite>-<mode>-<precision>-b<batch>.hlo.txt (default: off)")
    p.add_argument("--steps", type=int, default=None, help="override the steps per timed window (K)")
    p.add_argument("--windows", type=int, default=None, help="override the number of timed windows")
    p.add_argument("--warmup", type=int, default=None, help="override the untimed warm-up windows")
    p.add_argument("--whole-run-steps", type=int, default=WHOLE_RUN_STEPS,
                   help=f"steps of the toy whole-run measurement (default: {WHOLE_RUN_STEPS}, the seed's)")
    p.add_argument("--torch-compile", choices=("auto", "on", "recipe-bf16", "off"), default="auto",
                   help="which PyTorch configurations to torch.compile: on (all), recipe-bf16 (bf16 at the recipe "
                        "batch), off; auto is recipe-bf16 on a GPU, off under --quick on CPU, else on (default: auto)")
    p.add_argument("--torch-compile-mode", default=None,
                   choices=("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
                   help="torch.compile mode (default: reduce-overhead on CUDA, for its CUDA graphs; default on CPU)")
    p.add_argument("--time-budget", type=float, default=None,
                   help="seconds after which no further runner is built or compiled (those left out are recorded "
                        "as skipped), so the run ends about one runner's time later; order --suite and "
                        "--batch-sizes by importance (default: no limit)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data and initial weights")
    p.add_argument("--out", default="results", help="results root; files go to <out>/bench/ (default: results)")
    p.add_argument("--quick", action="store_true", help="fewer, shorter windows and a tiny CPU CNN: under 3 minutes on 2 CPU cores")
    p.add_argument("--no-progress", action="store_true", help="accepted for symmetry with the other commands")
    p.set_defaults(func=cmd)


def cmd(args) -> int:
    import jax

    for name in ("batch_size", "steps", "windows", "whole_run_steps"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be positive, got {v}")
    if args.time_budget is not None and args.time_budget <= 0:
        raise UsageError(f"--time-budget must be positive, got {args.time_budget:g}")
    if args.batch_size and args.batch_sizes:
        raise UsageError("give --batch-size or --batch-sizes, not both")
    if args.warmup is not None and args.warmup < 0:
        raise UsageError(f"--warmup must be >= 0, got {args.warmup}")
    out_dir = Path(args.out) / "bench"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot write results to {out_dir}: {e.strerror or e}") from None

    # Compile times are measured cold: a persistent compilation cache (e.g. $JAX_COMPILATION_CACHE_DIR)
    # would turn them into disk loads. The toy whole-run measures cold and warm cache explicitly.
    jax.config.update("jax_enable_compilation_cache", False)
    t_start = time.perf_counter()
    load_start = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    gpu = jax.devices()[0].platform == "gpu"
    n_local = jax.local_device_count()
    precisions = resolve_precisions(args.precision, gpu)
    art = Artifacts(args.dump_hlo and Path(args.dump_hlo), args.profile and Path(args.profile), args.profile_only)
    devices = args.devices or sorted({1, n_local})
    modes = args.modes
    # Import PyTorch only when it is benchmarked (it takes seconds, and sets OMP_WAIT_POLICY first).
    torch_ok = (import_torch() is not None) if "torch" in args.frameworks else \
        importlib.util.find_spec("torch") is not None
    spec = args.batch_sizes or ([(None, args.batch_size)] if args.batch_size else [])
    compile_skip = compile_policy(args.torch_compile, gpu=gpu, quick=args.quick)
    budget = Budget(args.time_budget, t_start)

    log = lambda s: print(s, flush=True)
    log(f"bench: suites {','.join(args.suite)}; frameworks {','.join(args.frameworks)}; precision "
        f"{','.join(precisions)}; pmap devices {devices} of {n_local} local ({jax.devices()[0].platform})")
    records: list[Record] = []
    if "torch" in args.frameworks and not torch_ok:
        log("bench: PyTorch is not installed; its records are skipped (optional extra: pip install .[torch])")
    for suite in args.suite:
        for batch in suite_batches(suite, spec):
            t = time.perf_counter()
            wl = make_workload(suite, gpu=gpu, quick=args.quick, seed=args.seed, batch=batch,
                               steps=args.steps, windows=args.windows, warmup=args.warmup)
            precs = run_precisions(suite, wl.batch, resolve_precisions(args.precision, gpu, suite),
                                   args.sweep_precision)
            items = _items(wl, args, precisions=precs, devices=devices, gpu=gpu, compile_skip=compile_skip,
                           budget=budget, art=art)
            records += measure(items, wl, log=log)
            log(f"bench: {suite} at batch {wl.batch} took {time.perf_counter() - t:.1f} s")
        if suite == "toy" and "whole-run" in modes:
            records += bench_whole_run([f for f in args.frameworks if f in ("numpy", "jax")],
                                       steps=args.whole_run_steps, log=log)

    ratios = compute_ratios(records, gpu)
    checks = acceptance_checks(records, gpu)
    batches = batch_summary(records)
    machine = machine_info()
    machine["loadavg_start"] = load_start  # other jobs on a shared machine: read the numbers with this in mind
    machine["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    doc = {"machine": machine, "versions": package_versions(),
           "settings": {"suites": args.suite, "frameworks": args.frameworks, "modes": modes, "devices": devices,
                        "precisions": {s: resolve_precisions(args.precision, gpu, s) for s in args.suite},
                        "quick": args.quick, "seed": args.seed,
                        "batch_sizes": spec, "sweep_precision": args.sweep_precision,
                        "torch_compile": args.torch_compile, "torch_compile_mode": args.torch_compile_mode,
                        "time_budget_s": args.time_budget, "profile": args.profile,
                        "profile_only": args.profile_only, "dump_hlo": args.dump_hlo,
                        "torch_available": torch_ok},
           "records": [dataclasses.asdict(r) for r in records], "ratios": ratios, "batches": batches,
           "checks": checks,
           "wall_time_s": round(time.perf_counter() - t_start, 2)}
    atomic_write_json(out_dir / "bench.json", doc)
    table = markdown(records, ratios, checks, machine, batches)
    atomic_write_text(out_dir / "bench.md", table)
    plot(records, out_dir / "bench.png", gpu)
    print()
    print(table, end="")
    print(f"\nwrote {out_dir / 'bench.json'}, bench.md, bench.png in {doc['wall_time_s']:.1f} s")
    return 0


def _items(wl: Workload, args, *, precisions: list[str], devices: list[int], gpu: bool,
           compile_skip: Callable[[Workload, str], str], budget: Budget, art: Artifacts) -> list[Runner | Record]:
    """Every selected framework's prepared runners (or skipped records) for one workload."""
    items: list[Runner | Record] = []
    if "numpy" in args.frameworks and "step" in args.modes and wl.suite in NUMPY_SUITES:
        items.append(prepare(functools.partial(numpy_runner, wl), wl, "numpy", "step", "fp32", budget=budget))
    if "jax" in args.frameworks:
        # The CPU CNN compiles for ~10 s per program; under --quick its pmap path is left out.
        skip_pmap = ("pmap left out for the CPU CNN under --quick (about 10 s of compilation per program)"
                     if args.quick and wl.suite == "cnn" and not gpu and args.devices is None else "")
        items += jax_runners(wl, precisions=precisions, modes=args.modes, devices=devices, seed=args.seed,
                             skip_pmap=skip_pmap, budget=budget, art=art)
    if "torch" in args.frameworks:
        items += torch_runners(wl, precisions=precisions, modes=args.modes, seed=args.seed, budget=budget,
                               compile_skip=compile_skip, compile_mode=args.torch_compile_mode)
    return items


def _child_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m train.bench")
    p.add_argument("--whole-run-child", required=True, choices=("numpy", "jax"))
    p.add_argument("--steps", type=int, default=WHOLE_RUN_STEPS)
    p.add_argument("--cache-dir", default=None)
    a = p.parse_args(argv)
    print(json.dumps(_whole_run_child(a.whole_run_child, a.cache_dir, a.steps)))
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
