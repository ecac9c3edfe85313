"""The toy's whole 1,500-step run, timed in fresh processes through the project's own path
(``mlp_toy.make_backend`` + ``train.engine.loop.train_loop``), with JAX's persistent compilation cache
empty (cold) and filled by the cold run (warm).

``python -m train.bench.whole_run --whole-run-child FRAMEWORK`` is the child process; it prints
one JSON line. The child's imports (JAX's included) are inside its functions: they are part of
what it times.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from train.bench.records import Record, line, skipped

# The seed's Task 1 schedule: 1,500 SGD steps, batch 30, evaluation every 30.
WHOLE_RUN_STEPS = 1500
ROOT = Path(__file__).resolve().parents[2]


def _use_cache(cache_dir: str) -> None:
    """JAX's persistent compilation cache in ``cache_dir``, every program cached however small or
    quick to compile: the toy run's programs all are."""
    import jax

    jax.config.update("jax_compilation_cache_dir", cache_dir)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


def _time_calls(backend, total: list[float]) -> None:
    """Wrap the backend's train and evaluate so that ``total[0]`` adds up the time inside them."""
    def timed(fn):
        def call(*a):
            t = time.perf_counter()
            try:
                return fn(*a)
            finally:
                total[0] += time.perf_counter() - t
        return call
    backend.train, backend.evaluate = timed(backend.train), timed(backend.evaluate)


def whole_run_child(framework: str, cache_dir: str | None, steps: int) -> dict:
    """Runs in a fresh interpreter: time mlp_toy's make_backend + the training loop."""
    t0 = time.perf_counter()
    if cache_dir:
        _use_cache(cache_dir)
    from data.toy import make_toy_data
    from train.backends.jax_compile_log import CompileLog
    from train.experiments import mlp_toy
    from train.engine.loop import train_loop

    with CompileLog() as compiles:
        t1 = time.perf_counter()
        cfg = mlp_toy.ToyConfig(framework=framework, steps=steps)
        data = make_toy_data(cfg.dataset, n_samples=cfg.samples, noise=cfg.noise,
                             test_fraction=cfg.test_fraction, seed=cfg.seed)
        periods = mlp_toy.schedule(cfg, len(data.train_y))
        t2 = time.perf_counter()
        backend = mlp_toy.make_backend(cfg, framework, data)
        t3 = time.perf_counter()
        # Time inside the backend's train and evaluate calls (dispatch, compute, metrics to host);
        # the rest of the loop is its bookkeeping (metrics.jsonl, NaN checks, progress bar).
        in_period = [0.0]
        _time_calls(backend, in_period)
        with tempfile.TemporaryDirectory(prefix="bench-run-") as run_dir:
            # Checkpoints off: this times training; a checkpoint's cost is the disk's.
            [(log, _)] = train_loop(backend, [periods], [Path(run_dir)], checkpoints=False, progress=False)
        t4 = time.perf_counter()
    test_acc = [r["accuracy"] for r in log.rows if r["split"] == "test"]
    return {"framework": framework, "steps": steps, "startup_s": t1 - t0, "data_s": t2 - t1,
            "build_s": t3 - t2, "run_s": t4 - t3, "total_s": t4 - t2,
            "in_period_s": in_period[0], "loop_overhead_s": (t4 - t3) - in_period[0],
            "trainer_compile_s": float(backend.compile_time_s),
            "trace_s": compiles.total("trace"), "lower_s": compiles.total("lower"),
            "backend_compile_s": compiles.total("compile"), "programs_compiled": compiles.compiles,
            "cache_hits": compiles.cache_hits,
            "final_test_accuracy": test_acc[-1] if test_acc else None,
            # The costliest programs first: where cold-start time goes.
            "programs": [[k, {p: round(v, 4) for p, v in d.items()}]
                         for k, d in compiles.costliest(8)]}


def whole_run(framework: str, cache_dir: str | None, steps: int = WHOLE_RUN_STEPS,
              timeout: float = 300) -> dict:
    """Run :func:`whole_run_child` in a fresh Python process (nothing compiled or imported yet)."""
    cmd = [sys.executable, "-m", "train.bench.whole_run", "--whole-run-child", framework,
           "--steps", str(steps)]
    if cache_dir:
        cmd += ["--cache-dir", cache_dir]
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": path},
                          capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"whole-run child failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _record(mode: str, r: dict, note: str, batch: int) -> Record:
    return Record("mlp-toy", r["framework"], mode, "fp32", 1, batch,
                  compile_s=r["backend_compile_s"] or None, step_s=r["total_s"] / r["steps"],
                  examples_per_s=r["steps"] * batch / r["total_s"], steps_per_window=r["steps"],
                  windows=1, total_s=r["total_s"], note=note,
                  extra={k: (round(v, 4) if isinstance(v, float) else v)
                         for k, v in r.items() if k != "framework"})


def bench_whole_run(frameworks: Sequence[str], *, steps: int, log=print) -> list[Record]:
    """NumPy's whole run, and JAX's cold then warm; a failure is a skipped record (and a failed
    cold run skips the warm one)."""
    batch = 30
    note = (f"fresh process: mlp_toy.make_backend + train_loop (no checkpoints), {steps} steps, "
            f"evaluation every 30")
    out = []
    with tempfile.TemporaryDirectory(prefix="jax-cache-") as cache:
        runs = {"numpy": [("whole-run", None, note)],
                "jax": [("whole-run-cold", cache,
                         f"{note}; empty persistent compilation cache (cold)"),
                        ("whole-run-warm", cache,
                         f"{note}; persistent compilation cache filled by the cold run (warm)")]}
        for framework in [f for f in runs if f in frameworks]:
            for mode, cache_dir, text in runs[framework]:
                try:
                    rec = _record(mode, whole_run(framework, cache_dir, steps), text, batch)
                except Exception as e:  # noqa: BLE001 - report, keep benchmarking
                    rec = skipped("mlp-toy", framework, mode, f"failed: {e}", batch_size=batch)
                out.append(rec)
                log(line(rec))
                if rec.skipped:
                    break
    return out


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m train.bench.whole_run")
    p.add_argument("--whole-run-child", required=True, choices=("numpy", "jax"))
    p.add_argument("--steps", type=int, default=WHOLE_RUN_STEPS)
    p.add_argument("--cache-dir", default=None)
    a = p.parse_args(argv)
    print(json.dumps(whole_run_child(a.whole_run_child, a.cache_dir, a.steps)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
