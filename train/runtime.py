"""One process setup for the command line and ``train.run``: compilation cache, jax.distributed, backend check, profiling."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import jax

from train.backends import jax_profiling
from train.engine.results import set_writer
from train.errors import UsageError

_JOINED = False  # jax.distributed.initialize may run once per process


@contextmanager
def session(*, profile=None, dump_hlo=None, **distributed) -> Iterator[None]:
    """Within: this process is set up to train (``distributed``: init_distributed's settings), and
    ``--profile``/``--dump-hlo`` folders are in force; on leaving, profiling is off again."""
    enable_compilation_cache()
    init_distributed(**distributed)
    check_jax_backend()
    jax_profiling.configure(profile, dump_hlo)
    try:
        yield
    finally:
        jax_profiling.configure()


def init_distributed(*, coordinator: str | None = None, num_processes: int | None = None,
                     process_id: int | None = None, distributed: bool = False) -> None:
    """Join a multi-process job when asked to, before anything touches a JAX device.

    Every process trains on its own local devices and feeds them its own shard of each global
    batch; gradients are averaged over all devices of all processes; only process 0 writes results.
    """
    env = os.environ
    global _JOINED
    coord = coordinator or env.get("JAX_COORDINATOR_ADDRESS")
    nproc = num_processes or (int(env["JAX_NUM_PROCESSES"]) if env.get("JAX_NUM_PROCESSES") else None)
    pid = process_id
    if pid is None and env.get("JAX_PROCESS_ID"):
        pid = int(env["JAX_PROCESS_ID"])
    auto = distributed or env.get("JAX_DISTRIBUTED", "") in ("1", "true")
    if _JOINED or not (coord or nproc or auto):
        return
    if not auto and (coord is None or nproc is None or pid is None):
        raise UsageError("a multi-process run needs --coordinator, --num-processes and --process-id "
                         "(or JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID)")
    if nproc is not None and (nproc < 1 or pid is None or not 0 <= pid < nproc):
        raise UsageError(f"--process-id must be in [0, {nproc}), got {pid}")

    # CPU collectives across processes need gloo; GPUs use NCCL on their own.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if auto and coord is None:
        jax.distributed.initialize()
    else:
        jax.distributed.initialize(coordinator_address=coord, num_processes=nproc, process_id=pid)
    set_writer(jax.process_index() == 0, jax.process_count())
    _JOINED = True


def enable_compilation_cache() -> None:
    """JAX's persistent compilation cache, on by default: a rerun loads its XLA programs from disk.

    $JAX_COMPILATION_CACHE_DIR picks the folder (default ~/.cache/jax_curriculum/xla); set it
    to an empty string to turn the cache off. Every program is cached, however small: a short run's
    programs each fall below JAX's default threshold, yet together dominate its time.
    """

    path = os.environ.get("JAX_COMPILATION_CACHE_DIR",
                          str(Path(os.environ.get("JAX_CURRICULUM_CACHE", Path.home() / ".cache" / "jax_curriculum")) / "xla"))
    if not path:
        return
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


def check_jax_backend() -> None:
    """A backend JAX cannot start (JAX_PLATFORMS=cuda without a GPU or its plugin) is one line, not 50."""
    try:
        jax.devices()
    except (RuntimeError, AssertionError) as e:
        detail = str(e).splitlines()[0][:200] if str(e) else "no detail given"
        raise UsageError(f"JAX could not start a backend (JAX_PLATFORMS={os.environ.get('JAX_PLATFORMS') or 'unset'}: "
                         f"{type(e).__name__}: {detail}); check JAX_PLATFORMS, and for a GPU its driver and "
                         f"jax's CUDA plugin") from None
