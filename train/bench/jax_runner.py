"""JAX: the training runs' own trainer (``train.backends.jax_trainer.Trainer``), models and optimizers, timed.

Every mode (``step-loop``, ``fused``, and the data-parallel paths ``pmap``, ``shard_map``, ``jit``) is
a ``Trainer`` whose ``train`` call is one timed window, so what is timed is what trains; a path on
one device shows what that path costs over plain ``jit`` (``fused``).
"""

from __future__ import annotations

import fnmatch
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx

from train.bench import jax_variants
from train.bench.cost import cost_of, memory_of, per_step_cost
from train.bench.hlo_stats import step_ops
from train.bench.records import PARALLEL_MODES, Record, error_text, run_name, skipped
from train.bench.timing import Budget, Runner, prepare
from train.bench.workloads import Workload, with_precision
from train.backends.jax_backend import model_compiler_options
from train.backends.jax_compile_log import CompileLog
from train.backends.jax_parallel import model_axis
from train.backends.jax_profiling import profile_to, trace_files
from train.backends.jax_trainer import AXIS, Trainer, create_state
from train.precision import TABLE

_PART_FIELD = {"trace": "trace_s", "lower": "lower_s", "compile": "xla_compile_s"}  # record.extra
CPU_SCAN_CONV_NOTE = ("XLA:CPU compiles convolutions inside lax.scan without its fast (YNNPACK) "
                      "kernels, so CPU training runs the CNN one step per call (step-loop)")


@dataclass
class JaxSetup:
    """What a training run of one suite builds, at one precision, by its experiment's hooks."""

    wl: Workload
    precision: str
    graphdef: Any
    graphdef_pmap: Any               # the model built for pmap and shard_map (batch norm averaged over devices)
    host_state: Any                  # create_state's TrainState on the host; each mode copies it
    tx: Any
    preprocess: Callable
    compiler_options: dict | None = None
    settings: dict = field(default_factory=dict)

    def model(self) -> nnx.Module:
        """The JAX model at its initial state (what the PyTorch twin copies its weights from)."""
        return nnx.merge(self.graphdef, self.host_state.params, self.host_state.model_state)


def matmul_scope(precision: str):
    """The matmul precision a runner at ``precision`` traces and compiles under (precision.TABLE)."""
    return jax.default_matmul_precision(TABLE[precision].matmul)


def jax_setup(wl: Workload, precision: str) -> JaxSetup:
    """The suite's JAX backend as its experiment builds it (the toy: NumPy-drawn weights and its
    compiler options), or its model, optimizer and preprocessing from the experiment's factories."""
    spec, cfg = wl.spec, with_precision(wl.cfg, precision)
    settings = {"matmul_precision": TABLE[precision].matmul, **spec.jax_settings(cfg)}
    if spec.jax_backend is not None:
        backend = spec.jax_backend(wl, cfg)
        fns, options = backend.trainer.fns, backend.trainer.compiler_options
        return JaxSetup(wl, precision, backend.graphdef, backend.graphdef, backend.host_state(),
                        fns.tx, fns.preprocess, options, {**settings, **(options or {})})
    tx = spec.optimizer(cfg, wl)
    abstract = [nnx.eval_shape(lambda a=a: spec.model(cfg, a)) for a in (None, AXIS)]
    graphdef, graphdef_pmap = (nnx.graphdef(m) for m in abstract)
    # The model's own XLA options, as its training runs compile with (jax_backend.from_jax).
    options = model_compiler_options(type(abstract[0]), jax.local_devices()[:1])
    return JaxSetup(wl, precision, graphdef, graphdef_pmap,
                    initial_state(lambda: spec.model(cfg, None), tx, cfg.seed), tx,
                    spec.preprocess(wl), options or None,
                    {**settings, **{k: v if v != "" else "none" for k, v in options.items()}})


def initial_state(make_model: Callable[[], nnx.Module], tx, seed: int):
    """``create_state``'s state on the host, from one program compiled at -O0: eagerly, every
    initialiser would compile its own optimised program."""
    init = jax.jit(lambda: create_state(make_model(), tx, seed)[1])
    return jax.device_get(init.lower().compile({"xla_backend_optimization_level": 0})())


def build_trainer(s: JaxSetup, mode: str, n: int = 1) -> tuple[Trainer, Any, Any]:
    """``mode``'s Trainer on the first ``n`` local devices, with the state and data it trains on."""
    path = mode if mode in PARALLEL_MODES else None
    options = {**(s.compiler_options or {}), **jax_variants.VARIANTS.get(mode, {})}
    trainer = Trainer(s.graphdef_pmap if model_axis(path) else s.graphdef, s.tx, s.preprocess,
                      devices=jax.local_devices()[:n], compiler_options=options or None,
                      fuse=mode != "step-loop", parallel=path)
    data = trainer.replicate({"train_x": s.wl.train_x, "train_y": s.wl.train_y})
    return trainer, trainer.replicate(s.host_state), data


def peak_memory(device) -> int | None:
    try:
        stats = device.memory_stats()
    except Exception:  # noqa: BLE001 - backends without the call
        return None
    if not stats:
        return None
    return int(stats.get("peak_bytes_in_use", stats.get("bytes_in_use", 0))) or None


@dataclass
class Artifacts:
    """``--dump-hlo`` and ``--profile``: where each JAX runner's optimised HLO and profile go."""

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
            rec.extra["hlo"] = {"error": error_text(e)}

    def profile(self, rec: Record, window: Callable[[], Any]) -> None:
        """One more window under ``jax.profiler.trace`` into ``<profile_dir>/<run name>/``, after timing."""
        name = run_name(rec)
        if self.profile_dir is None or not any(fnmatch.fnmatchcase(name, g)
                                               for g in self.profile_only):
            return
        path = self.profile_dir / name
        try:
            with profile_to(path):
                window()
            files = trace_files(path)
            rec.extra["profile"] = {"path": str(path), "steps": rec.steps_per_window,
                                    "files": len(files),
                                    "bytes": sum(f.stat().st_size for f in files)}
        except Exception as e:  # noqa: BLE001
            rec.extra["profile"] = {"error": error_text(e)}


def one_step_cost(trainer: Trainer, state, data, idx) -> dict | None:
    """XLA's cost analysis of the one-step program (lowered only), to tell how the fused one counts its loop."""
    split = trainer.local(trainer.split_batches(np.asarray(idx, np.int32)))
    try:
        return cost_of(trainer.programs.step.lower(state, data, trainer.shard(split[:, 0])))
    except Exception:  # noqa: BLE001 - a missing figure must not cost the measurement
        return None


def record_program(rec: Record, s: JaxSetup, trainer: Trainer, state, data, log: CompileLog) -> Any:
    """The compile breakdown, the work per step and the memory of the runner's compiled program,
    into ``rec``; returns the compiled program."""
    # The trainer's program is the costliest one compiled (the rest: small eager operations).
    for _, parts in log.costliest(1):
        rec.extra.update({_PART_FIELD[k]: round(v, 4) for k, v in parts.items()})
    # bench turns JAX's persistent cache off (unless --compile-cache), so compile times are cold;
    # say so, or what it did.
    enabled = jax.config.jax_enable_compilation_cache and jax.config.jax_compilation_cache_dir
    rec.extra["persistent_cache"] = ("off" if not enabled else
                                     "hit" if log.cache_hits else "miss")
    name = "train" if trainer.fuse else "step"
    # The trainer's own calls, timed per stage (pmap: trace and lower are one call).
    rec.extra["compile_stages"] = {k: round(v, 4) for k, v in trainer._call.stages.get(name, {}).items()}
    exe = trainer.compiled()[name]
    rec.memory = memory_of(exe)
    try:
        rec.extra["hlo_ops"] = step_ops(exe.as_text(), fused=trainer.fuse)
    except Exception as e:  # noqa: BLE001 - a missing figure must not cost the measurement
        rec.extra["hlo_ops"] = {"error": error_text(e)}
    rec.extra["program_bytes"] = rec.memory["total_bytes"] if rec.memory else None
    with matmul_scope(s.precision):
        one = (cost_of(exe) if not trainer.fuse
               else one_step_cost(trainer, state, data, s.wl.idx))
    per_device = per_step_cost(cost_of(exe), one, s.wl.steps if trainer.fuse else 1)
    if per_device:
        # On several devices the program is one device's share of the global batch.
        rec.flops_per_step = per_device["flops"] * trainer.n
        rec.bytes_accessed_per_step = per_device["bytes_accessed"] * trainer.n
        rec.extra["flops_source"] = per_device["source"]
    return exe


def jax_runner(s: JaxSetup, mode: str, n: int = 1, art: Artifacts = Artifacts(),
               refs: dict | None = None) -> Runner:
    """One window is ``Trainer.train`` on the workload's K batches; the first call compiles.
    ``refs`` (precision -> jax_variants.Reference): given when variants run, so ``fused`` leaves
    its first window's result there and each variant is checked against it."""
    wl = s.wl
    trainer, state, data = build_trainer(s, mode, n)
    holder = [state]

    def window():
        holder[0], _ = trainer.train(holder[0], data, wl.idx)
        jax.block_until_ready(holder[0])

    rec = Record(wl.suite, "jax", mode, s.precision, n, wl.batch, steps_per_window=wl.steps,
                 settings=dict(s.settings))
    with matmul_scope(s.precision), CompileLog() as log:
        window()
    rec.compile_s = trainer.compile_time_s
    if refs is not None:
        check_variant(rec, s, trainer, data, holder[0], refs)
    exe = record_program(rec, s, trainer, holder[0], data, log)
    art.save_hlo(rec, exe)

    def after(r):
        r.peak_memory_bytes = peak_memory(trainer.devices[0])
        art.profile(r, window)
    return Runner(rec, window, after)


def check_variant(rec: Record, s: JaxSetup, trainer: Trainer, data, first, refs: dict) -> None:
    """``fused``: replay its first window from the initial state and leave both in ``refs``; a
    variant: its first window against that (jax_variants.exactness)."""
    if rec.mode == "fused":
        replay, _ = trainer.train(trainer.replicate(s.host_state), data, s.wl.idx)
        refs[s.precision] = jax_variants.reference(first, replay)
    elif rec.mode in jax_variants.VARIANTS:
        rec.extra["exact_vs_fused"] = jax_variants.exactness(first, refs.get(s.precision))
        if jax.devices()[0].platform == "cpu":
            rec.note = jax_variants.CPU_NOTE


def _parallel_skip(wl: Workload, n: int, skip_parallel: str) -> str:
    n_local = jax.local_device_count()
    if skip_parallel:
        return skip_parallel
    if n > n_local:
        return (f"{n} devices asked for, {n_local} exist; on CPU start the process with "
                f"XLA_FLAGS=--xla_force_host_platform_device_count={n}")
    return f"batch {wl.batch} is not divisible by {n} devices" if wl.batch % n else ""


def setups_for(wl: Workload, precisions: Sequence[str]) -> dict[str, Callable[[], JaxSetup]]:
    """Each precision's JaxSetup, built on first use so a failure or spent budget skips only a runner."""
    return {p: functools.cache(functools.partial(jax_setup, wl, p)) for p in precisions}


def suite_precisions(wl: Workload, precisions: Sequence[str]) -> list[str]:
    return [p for p in precisions if p != "bf16" or wl.spec.bf16]


def jax_runners(wl: Workload, *, precisions: Sequence[str], modes: Sequence[str],
                devices: Sequence[int], skip_parallel: str = "", budget: Budget | None = None,
                art: Artifacts = Artifacts(),
                setups: dict[str, Callable[[], JaxSetup]] | None = None) -> list[Runner | Record]:
    setups = setups or setups_for(wl, precisions)
    one_step_cpu = not wl.spec.fuse_on_cpu and jax.devices()[0].platform == "cpu"
    refs = {} if any(m in jax_variants.VARIANTS for m in modes) else None
    out: list[Runner | Record] = []
    for precision in suite_precisions(wl, precisions):
        setup = setups[precision]
        cells = [(m, 1) for m in ("step-loop", "fused", *jax_variants.VARIANTS) if m in modes]
        cells += [(m, n) for m in PARALLEL_MODES if m in modes for n in devices]
        for mode, n in cells:
            why = _parallel_skip(wl, n, skip_parallel) if mode in PARALLEL_MODES else ""
            out.append(skipped(wl.suite, "jax", mode, why, precision=precision, devices=n,
                               batch_size=wl.batch) if why else
                       prepare(lambda m=mode, n=n, setup=setup: jax_runner(setup(), m, n, art, refs),
                               wl, "jax", mode, precision, n, budget))
    for item in out:
        if one_step_cpu and isinstance(item, Runner) and item.record.mode not in ("step-loop",):
            item.record.note = CPU_SCAN_CONV_NOTE
    return out
