"""What the engine measures and saves with, supplied by the backends: the engine knows no framework.

``train.backends`` plugs in, when it is imported, the compile log of this process's XLA programs,
the profiler and HLO dumps, and the orbax checkpointer. Until something is plugged in, the engine
counts no programs, writes no profile and saves no checkpoint.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path


class NoCompileLog:
    """A compile log that sees nothing: no programs built, no cache hits."""

    compiles = 0
    cache_hits = 0

    def __enter__(self) -> NoCompileLog:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def summary(self) -> dict:
        return {"count": 0, "programs": {}, "cache_hits": 0}


class NoArtifacts:
    """A run's profile and HLO dump when nothing is plugged in: none."""

    def __init__(self, run_dir: Path, first: int, count: int) -> None:
        pass

    def period(self, pi: int):
        return nullcontext()

    def finish(self, backend) -> dict:
        return {}


_TOOLS = {"compile_log": NoCompileLog, "artifacts": NoArtifacts, "checkpointer": None}


def plug_in(*, compile_log=None, artifacts=None, checkpointer=None) -> None:
    """Set the factories: ``compile_log()`` (a context manager with ``compiles``, ``cache_hits`` and
    ``summary()``), ``artifacts(run_dir, first_period, periods)`` (``period(pi)``, ``finish(backend)``)
    and ``checkpointer(directory)`` (see ``train.backends.checkpoint.Checkpointer``)."""
    given = {"compile_log": compile_log, "artifacts": artifacts, "checkpointer": checkpointer}
    _TOOLS.update({k: v for k, v in given.items() if v is not None})


def compile_log():
    return _TOOLS["compile_log"]()


def artifacts(run_dir: Path, first: int, count: int):
    return _TOOLS["artifacts"](run_dir, first, count)


def can_checkpoint() -> bool:
    return _TOOLS["checkpointer"] is not None


def checkpointer(directory: Path):
    return _TOOLS["checkpointer"](directory)
