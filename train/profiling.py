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
