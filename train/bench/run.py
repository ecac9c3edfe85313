"""One ``bench`` run: which suites, batches, precisions and runners; timing them; the outputs."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import jax

from train.bench import curves, explain, paths, scaling
from train.bench.cost import Peaks, annotate
from train.bench.jax_runner import Artifacts, jax_runners, peak_memory, setups_for, suite_precisions
from train.bench.numpy_runner import numpy_runner
from train.bench.records import PARALLEL_MODES, PRECISIONS, Record
from train.bench.suites import RECIPE_BATCH, TABLE
from train.bench.report import acceptance_checks, batch_summary, compute_ratios, markdown, plot
from train.bench.timing import Budget, Runner, measure, prepare
from train.bench.torch_runner import NOT_INSTALLED, import_torch, torch_runners
from train.bench.whole_run import bench_whole_run
from train.bench.workloads import Workload, make_workload
from train.backends.jax_backend import jax_device_info
from train.engine.results import atomic_write_json, atomic_write_text, package_versions
from train.errors import UsageError
from train.precision import resolve


def suite_batches(suite: str, spec: Sequence[tuple[str | None, int]]) -> list[int | None]:
    """The batch sizes to run ``suite`` at: the ``--batch-sizes`` items for it or for every suite,
    in order, without repeats; ``[None]`` (the suite's default batch) when none applies."""
    return list(dict.fromkeys(b for s, b in spec if s in (None, suite))) or [None]


def resolve_precisions(spec: Sequence[tuple[str | None, str]], gpu: bool,
                       suite: str | None = None) -> list[str]:
    """The ``--precision`` items for ``suite`` (None: for any suite), in the order fp32, tf32,
    bf16; ``auto`` is what it means for the experiments (``train.precision.resolve``)."""
    want = {p for s, p in spec if suite is None or s in (None, suite)}
    if "auto" in want:
        want.add(resolve("auto", "gpu" if gpu else "cpu").name)
    return [p for p in PRECISIONS if p in want]


def run_precisions(suite: str, batch: int, precisions: Sequence[str],
                   sweep: Sequence[str] | None) -> list[str]:
    """Every selected precision at the suite's recipe batch; at other batches those in ``sweep``
    (``--sweep-precision``; None: all)."""
    return [p for p in precisions if batch == RECIPE_BATCH[suite] or sweep is None or p in sweep]


def compile_policy(choice, *, gpu: bool, quick: bool) -> Callable[..., str]:
    """``--torch-compile`` as ``(workload, precision, candidate) -> why that compiled candidate is
    skipped`` ("" to run it). ``choice``: a policy, or ``[(candidate or None, policy)]`` (a
    candidate's own policy, else the last general one; none: auto).

    ``auto`` is ``recipe-bf16`` on a GPU (inductor compiles for tens of seconds per model,
    precision and batch there, and bf16 is PyTorch's fastest configuration), ``off`` under
    --quick on CPU, else ``on``.
    """
    items = [(None, choice)] if isinstance(choice, str) else list(choice)
    general = [p for c, p in items if c is None]
    rules = {c: _policy(p, gpu=gpu, quick=quick) for c, p in items if c is not None}
    rules[None] = _policy(general[-1] if general else "auto", gpu=gpu, quick=quick)
    return lambda wl, p, mode=None: rules.get(mode, rules[None])(wl, p)


def _policy(choice: str, *, gpu: bool, quick: bool) -> Callable[[Workload, str], str]:
    if choice == "auto":
        choice = "recipe-bf16" if gpu else ("off" if quick else "on")
        if choice == "off":
            return lambda wl, p: ("torch.compile skipped under --quick on CPU: inductor compiles "
                                  "for tens of seconds per model here; run without --quick or with "
                                  "--torch-compile on")
    if choice == "off":
        return lambda wl, p: "torch.compile off (--torch-compile off)"
    if choice == "recipe-bf16":
        return lambda wl, p: "" if (p, wl.batch) == ("bf16", RECIPE_BATCH[wl.suite]) else (
            f"torch.compile only for bf16 at the recipe batch {RECIPE_BATCH[wl.suite]} "
            f"(--torch-compile recipe-bf16, the GPU default): inductor compiles for tens of "
            f"seconds per model, precision and batch; --torch-compile on compiles every "
            f"configuration")
    return lambda wl, p: ""


def machine_info() -> dict:
    info = jax_device_info()
    info.update({"cpu_count": os.cpu_count(),
                 "processor": platform.processor() or platform.machine(),
                 "python": sys.version.split()[0], "xla_flags": os.environ.get("XLA_FLAGS", ""),
                 # JAX preallocates most of a GPU's memory unless told not to: what PyTorch had.
                 **{k.lower(): os.environ.get(k) for k in ("XLA_PYTHON_CLIENT_PREALLOCATE",
                                                           "XLA_PYTHON_CLIENT_MEM_FRACTION")}})
    info["memory_stats_available"] = peak_memory(jax.local_devices()[0]) is not None
    return info


def _loadavg() -> list[float] | None:
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


@dataclass
class _Plan:
    """What the flags resolve to on this machine."""

    gpu: bool
    devices: list[int]
    precisions: list[str]
    spec: list                       # --batch-sizes (or --batch-size) as [(suite or None, batch)]
    torch_ok: bool
    compile_skip: Callable[..., str]    # (workload, precision, candidate) -> why not compiled
    budget: Budget
    art: Artifacts
    child_devices: int = 0           # >0: the data-parallel records run in a child with this many devices


def _plan(args, t_start: float) -> _Plan:
    gpu = jax.devices()[0].platform == "gpu"
    # Import PyTorch only when it is benchmarked (it is slow to import, and OMP_WAIT_POLICY must
    # be set before).
    torch_ok = (import_torch() is not None) if "torch" in args.frameworks else \
        importlib.util.find_spec("torch") is not None
    spec = args.batch_sizes or ([(None, args.batch_size)] if args.batch_size else [])
    art = Artifacts(args.dump_hlo and Path(args.dump_hlo), args.profile and Path(args.profile),
                    args.profile_only)
    devices = args.devices or sorted({1, jax.local_device_count()})
    return _Plan(gpu, devices, resolve_precisions(args.precision, gpu), spec, torch_ok,
                 compile_policy(args.torch_compile, gpu=gpu, quick=args.quick),
                 Budget(args.time_budget, t_start), art, scaling.child_devices(args, devices))


def _items(wl: Workload, args, plan: _Plan, precisions: list[str]) -> list[Runner | Record]:
    """Every selected framework's prepared runners (or skipped records) for one workload."""
    items: list[Runner | Record] = []
    if "numpy" in args.frameworks and "step" in args.modes and wl.spec.numpy:
        items.append(prepare(lambda: numpy_runner(wl), wl, "numpy", "step", "fp32",
                             budget=plan.budget))
    modes = [m for m in args.modes if not (m in PARALLEL_MODES and plan.child_devices)]
    setups = setups_for(wl, suite_precisions(wl, precisions))
    if "jax" in args.frameworks:
        # What XLA:CPU runs one step per call (the CNN) compiles slowly; under --quick its
        # data-parallel paths are left out.
        skip = (f"data-parallel paths left out for the CPU {wl.suite} under --quick (its compilation "
                f"is slow)" if args.quick and not wl.spec.fuse_on_cpu and not plan.gpu
                and args.devices is None else "")
        items += jax_runners(wl, precisions=precisions, modes=modes, devices=plan.devices,
                             skip_parallel=skip, budget=plan.budget, art=plan.art, setups=setups)
    if "torch" in args.frameworks:
        items += torch_runners(wl, precisions=precisions, modes=args.modes, budget=plan.budget,
                               jax_model=lambda p: lambda: setups[p]().model(),
                               compile_skip=plan.compile_skip, compile_mode=args.torch_compile_mode)
    return items


def _measure_all(args, plan: _Plan, log, on_group: Callable[[list[Record]], None] = lambda r: None
                 ) -> list[Record]:
    """Every group (suite and batch) in turn; ``on_group`` sees the records so far after each."""
    records: list[Record] = []
    for suite in args.suite:
        for batch in suite_batches(suite, plan.spec):
            t = time.perf_counter()
            wl = make_workload(suite, gpu=plan.gpu, quick=args.quick, seed=args.seed, batch=batch,
                               steps=args.steps, windows=args.windows, warmup=args.warmup)
            precs = run_precisions(suite, wl.batch,
                                   resolve_precisions(args.precision, plan.gpu, suite),
                                   args.sweep_precision)
            records += measure(_items(wl, args, plan, precs), wl.windows, wl.warmup, log=log)
            log(f"bench: {suite} at batch {wl.batch} took {time.perf_counter() - t:.1f} s")
            records += _weak_scaling(wl, args, plan, precs, suite_batches(suite, plan.spec), log)
            on_group(records)
        if TABLE[suite].whole_run and "whole-run" in args.modes:
            records += bench_whole_run([f for f in args.frameworks if f in ("numpy", "jax")],
                                       steps=args.whole_run_steps, log=log)
            on_group(records)
    return records


def _weak_scaling(wl: Workload, args, plan: _Plan, precs: list[str], batches, log) -> list[Record]:
    """The data-parallel paths at N times the batch on N devices (N > 1), for the weak-scaling
    curves; batches that the run measures anyway are left to it."""
    modes = [m for m in PARALLEL_MODES if m in args.modes]
    if "weak" not in args.scaling or not modes or "jax" not in args.frameworks or plan.child_devices:
        return []
    out: list[Record] = []
    for batch, n in scaling.weak_batches(wl.batch, plan.devices):
        if batch in batches or n > jax.local_device_count():
            continue
        w = make_workload(wl.suite, gpu=plan.gpu, quick=args.quick, seed=args.seed, batch=batch,
                          steps=args.steps, windows=args.windows, warmup=args.warmup)
        items = jax_runners(w, precisions=precs, modes=modes, devices=[n], budget=plan.budget,
                            art=plan.art)
        for item in items:
            if isinstance(item, Runner):
                item.record.extra["scaling"] = "weak"
        out += measure(items, w.windows, w.warmup, log=log)
    return out


def _settings(args, plan: _Plan) -> dict:
    return {"suites": args.suite, "frameworks": args.frameworks, "modes": args.modes,
            "devices": plan.devices,
            "precisions": {s: resolve_precisions(args.precision, plan.gpu, s) for s in args.suite},
            "quick": args.quick, "compile_cache": args.compile_cache, "seed": args.seed,
            "batch_sizes": plan.spec, "sweep_precision": args.sweep_precision,
            "torch_compile": args.torch_compile, "torch_compile_mode": args.torch_compile_mode,
            "time_budget_s": args.time_budget, "profile": args.profile,
            "profile_only": args.profile_only, "dump_hlo": args.dump_hlo,
            "torch_available": plan.torch_ok, "scaling": args.scaling,
            "pmap_child_devices": plan.child_devices}


def _document(records, ratios, checks, machine, batches, curve) -> str:
    """bench.md: the speed table, ratios, batches and checks; then work, memory and compile; then
    the curves."""
    text = markdown(records, ratios, checks, machine, batches)
    extra = ["", explain.INTRO, "", *explain.work_table(records), *explain.kernels_table(records),
             *paths.table(records, ratios), *curves.markdown(curve["batch"], curve["scaling"])]
    return text + "\n".join(extra) + "\n"


def _plot_curves(curve: dict, out_dir: Path) -> None:
    if curve["batch"]:
        curves.plot_batch(curve["batch"], out_dir / "batch_curve.png")
    if curve["scaling"]:
        curves.plot_scaling(curve["scaling"], out_dir / "scaling_curve.png")


def _write(out_dir: Path, records: list[Record], state: dict, *, partial: bool) -> tuple[dict, str]:
    """bench.json and bench.md of ``records``; bench.json's ``partial`` says whether groups may
    follow. Figures only at the end (matplotlib is slow)."""
    plan = state["plan"]
    annotate(records, state["peaks"])
    ratios, checks = compute_ratios(records, plan.gpu), acceptance_checks(records, plan.gpu)
    paths.add_ratios(records, ratios)
    batches = batch_summary(records)
    curve = {"batch": curves.batch_curves(records), "scaling": curves.scaling_curves(records)}
    # Other jobs on a shared machine: read the numbers with the load averages in mind.
    machine = {**machine_info(), "loadavg_start": state["load_start"], "loadavg_end": _loadavg()}
    doc = {"machine": machine, "versions": package_versions(),
           "settings": _settings(state["args"], plan), "partial": partial,
           "records": [dataclasses.asdict(r) for r in records], "ratios": ratios,
           "batches": batches, "checks": checks, "curves": curve,
           "wall_time_s": round(time.perf_counter() - state["t_start"], 2)}
    atomic_write_json(out_dir / "bench.json", doc)
    table = _document(records, ratios, checks, machine, batches, curve)
    atomic_write_text(out_dir / "bench.md", table)
    if not partial:
        plot(records, out_dir / "bench.png", plan.gpu)
        _plot_curves(curve, out_dir)
    return doc, table


def run(args) -> int:
    """Run the benchmark ``args`` asks for; write ``<out>/bench/bench.json``, ``bench.md`` and
    ``bench.png``, and print the table."""
    out_dir = Path(args.out) / "bench"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot write results to {out_dir}: {e.strerror or e}") from None
    # Compile times are measured cold: a persistent compilation cache would turn them into disk
    # loads. The toy whole-run measures the cold and the warm cache explicitly.
    if not args.compile_cache:
        jax.config.update("jax_enable_compilation_cache", False)
    t_start, load_start = time.perf_counter(), _loadavg()
    plan = _plan(args, t_start)
    log = lambda s: print(s, flush=True)  # noqa: E731
    log(f"bench: suites {','.join(args.suite)}; frameworks {','.join(args.frameworks)}; precision "
        f"{','.join(plan.precisions)}; data-parallel devices {plan.devices} of {jax.local_device_count()} "
        f"local ({jax.devices()[0].platform})")
    if "torch" in args.frameworks and not plan.torch_ok:
        log(f"bench: {NOT_INSTALLED}; its records are skipped")
    peaks = Peaks()
    peaks.get("fp32")   # measured before the runs and again after them (on CPU): the higher counts
    state = {"args": args, "plan": plan, "peaks": peaks, "t_start": t_start, "load_start": load_start}
    # Rewritten after every group, atomically: a run interrupted later keeps what it measured.
    records = _measure_all(args, plan, log, lambda recs: _write(out_dir, recs, state, partial=True))
    peaks.remeasure()
    if plan.child_devices:
        records = scaling.merge(records, scaling.pmap_in_child(args, plan.spec, plan.devices,
                                                               plan.child_devices, log))
    doc, table = _write(out_dir, records, state, partial=False)
    print()
    print(table, end="")
    print(f"\nwrote {out_dir / 'bench.json'}, bench.md, bench.png in {doc['wall_time_s']:.1f} s")
    return 0
