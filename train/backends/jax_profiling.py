"""JAX profiler traces and optimised-HLO dumps, for ``bench`` and for the training commands.

A trace is written by ``jax.profiler`` under ``DIR/plugins/profile/<timestamp>/``: a
``*.xplane.pb`` (TensorBoard's profile plugin, or xprof) and a ``*.trace.json.gz`` Perfetto trace
(drag it onto https://ui.perfetto.dev), which :func:`trace_events` reads back.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import jax

from train.engine.results import is_writer, require_writable


@contextmanager
def profile_to(path: str | Path) -> Iterator[Path]:
    """Trace what runs inside into ``path`` (created), with a Perfetto trace beside the xplane."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    with jax.profiler.trace(str(path), create_perfetto_trace=True):
        yield path


def trace_files(path: str | Path) -> list[Path]:
    return sorted(f for f in Path(path).rglob("*") if f.is_file())


def trace_events(path: str | Path) -> list[dict]:
    """The events of the Perfetto trace under ``path`` (Chrome trace-event JSON, gzipped)."""
    (trace,) = [f for f in trace_files(path) if f.name.endswith(".trace.json.gz")]
    with gzip.open(trace, "rt") as f:
        doc = json.load(f)
    return doc["traceEvents"] if isinstance(doc, dict) else doc


def dump_hlo(programs: dict, folder: str | Path, prefix: str = "") -> dict[str, int]:
    """Each compiled program's optimised HLO as ``folder/<prefix><name>.hlo.txt``; -> {file: bytes}."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, exe in programs.items():
        path = folder / f"{prefix}{name}.hlo.txt"
        text = exe.as_text() if hasattr(exe, "as_text") else ""
        if text:
            path.write_text(text)
            out[path.name] = path.stat().st_size
    return out


# -- training commands: --profile DIR and --dump-hlo DIR ------------------------------------------
# Set once per process by the command line or train.run (configure), read by the training loop.
_WANTED: dict[str, Path | None] = {"profile": None, "dump_hlo": None}


def configure(profile: str | Path | None = None, dump_hlo: str | Path | None = None) -> None:
    """Where the training commands of this process write profiles and HLO (None: nowhere).

    A folder that cannot be written is a UsageError now, before any run starts, not after its
    first period.
    """
    wanted = {"profile": Path(profile) if profile else None, "dump_hlo": Path(dump_hlo) if dump_hlo else None}
    for name, folder in wanted.items():
        if folder is not None and is_writer():
            require_writable(folder, f"--{name.replace('_', '-')} output")
    _WANTED.update(wanted)


class RunArtifacts:
    """One run's profile and HLO dump. The profiled period is the first one after the first that
    this process trains (steady state: its programs are compiled), or the only one."""

    def __init__(self, run_dir: Path, first: int, count: int) -> None:
        self.name = Path(run_dir.parent.name) / run_dir.name     # <experiment>/<run-name>
        self.target = first + 1 if first + 1 < count else first
        self.info: dict = {}

    @contextmanager
    def period(self, pi: int) -> Iterator[None]:
        if _WANTED["profile"] is None or pi != self.target:
            yield
            return
        path = _WANTED["profile"] / self.name
        with profile_to(path):
            yield
        files = trace_files(path)
        self.info["profile"] = {"path": str(path), "period": pi + 1, "files": len(files),
                                "bytes": sum(f.stat().st_size for f in files)}

    def finish(self, backend) -> dict:
        """Dump the compiled programs' HLO if asked; -> what summary.json records."""
        trainer = getattr(backend, "trainer", None)
        if _WANTED["dump_hlo"] is not None and hasattr(trainer, "compiled"):
            folder = _WANTED["dump_hlo"] / self.name
            self.info["hlo"] = {"path": str(folder), "files": dump_hlo(trainer.compiled(), folder)}
        return self.info
