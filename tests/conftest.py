import contextlib
import io
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Settings that make the suite hold on a GPU too; set before JAX is imported, and inherited by the
# CLI subprocesses the tests start.
# - Many test processes share one GPU: none may grab 75% of its memory up front.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
# - GPUs compute fp32 matmuls and convolutions in TF32 by default (10 mantissa bits); the
#   equivalence tests (NumPy vs JAX, scan vs loop, 1 vs N devices) compare to 1e-5 and need fp32.
os.environ.setdefault("JAX_DEFAULT_MATMUL_PRECISION", "highest")
# - GPU scatters (gather gradients, max-pool backward) use atomics, whose order varies from run to
#   run; the bit-exact resume and determinism tests need XLA's deterministic kernels.
# - Under pytest-xdist every CPU core already runs a worker: one compute thread per process (XLA's
#   CPU backend, PyTorch's OpenMP pool) spares the cores the switching between oversubscribed threads.
#   A caller that sets XLA's threading itself (scripts/test_matrix.py) keeps its setting.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if "xla_cpu_multi_thread_eigen" not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()
if Path("/dev/nvidiactl").exists() and "xla_gpu_deterministic_ops" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_gpu_deterministic_ops=true").strip()


# JAX's persistent compilation cache, as every training command uses it (and so the CLI subprocesses
# here): many tests build the same small programs, and a rerun of the suite loads them from disk.
from train.runtime import enable_compilation_cache  # noqa: E402 - after the settings above, which JAX reads

enable_compilation_cache()


def pytest_collection_modifyitems(config, items):
    """Slow tests first, the longest of them (``slow(longest=True)``) before the rest: with two workers
    they start early and the short ones fill in around them, rather than one of them running alone
    at the end."""
    def order(item):
        slow = item.get_closest_marker("slow")
        return (slow is None, not (slow and slow.kwargs.get("longest")))
    items.sort(key=order)


def xla_flags(*extra: str) -> str:
    """This process's XLA_FLAGS plus ``extra``, for a subprocess that needs a flag of its own (simulated
    devices) and must keep the ones the suite runs under (scripts/test_matrix.py's settings)."""
    return " ".join([os.environ.get("XLA_FLAGS", ""), *extra]).strip()


@contextlib.contextmanager
def killed_in_period(backend_cls, n: int):
    """Within: ``backend_cls.train`` raises RuntimeError("killed") on its ``n``-th call, a run dying mid-way
    in this process; the block must raise it."""
    train, calls = backend_cls.train, []

    def dies(self, idx):
        calls.append(1)
        if len(calls) == n:
            raise RuntimeError("killed")
        return train(self, idx)

    backend_cls.train = dies
    try:
        with pytest.raises(RuntimeError, match="killed"):
            yield
    finally:
        backend_cls.train = train


def wait_until(done, proc, what: str, timeout: float = 300) -> None:
    """Poll ``done()`` while the subprocess ``proc`` runs; fail the test if it ends first or time runs out."""
    t = time.time()
    while not done():
        if proc.poll() is not None:
            pytest.fail(f"the process ended before {what}: {proc.stderr.read()[-2000:]}")
        if time.time() - t > timeout:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def on_gpu() -> bool:
    """True where JAX (and so every CLI subprocess) computes on a GPU."""
    import jax
    return jax.default_backend() == "gpu"


def run_cli(*args, env=None, timeout=600):
    """Run ``python -m train ...`` in a subprocess from the repo root; returns CompletedProcess."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "train", *map(str, args)], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def cli():
    return run_cli


def run_cli_in_process(*args) -> subprocess.CompletedProcess:
    """``python -m train ...`` as ``cli.main(argv)`` in this process: the same exit code, stdout and stderr
    as the subprocess, without its interpreter and JAX start. A genuine bug's exception propagates."""
    from train import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main([str(a) for a in args])
        except SystemExit as e:  # argparse's usage errors and --help
            code = e.code if isinstance(e.code, int) else int(e.code is not None)
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


@pytest.fixture
def cli_fast():
    return run_cli_in_process


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
    """``finished_run(name)``: the out folder of test_resilience.RUNS[name] trained to the end, once per
    worker, for the tests that compare an interrupted run with it (read only);
    ``finished_run(name, into)`` copies it to ``into`` for a test that damages or resumes it."""
    from test_resilience import RUNS
    done = {}

    def get(name: str, into: Path | None = None) -> Path:
        if name not in done:
            args, _ = RUNS[name]
            out = tmp_path_factory.mktemp(f"finished-{name}")
            r = run_cli_in_process(*args, "--out", out, "--no-progress")
            assert r.returncode == 0, r.stderr
            done[name] = out
        if into is None:
            return done[name]
        shutil.copytree(done[name], into, dirs_exist_ok=True)
        return into
    return get


def run_bench(argv: list[str]) -> int:
    """``python -m train bench ARGV`` in this process: the bench's parser and entry point."""
    import argparse

    from train import bench
    p = argparse.ArgumentParser()
    bench.add_parser(p.add_subparsers(dest="command"))
    args = p.parse_args(["bench", *argv])
    return args.func(args)
