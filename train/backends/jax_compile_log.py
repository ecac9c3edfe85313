"""Where compilation time goes, and how often it happens: trace, lower and XLA compile per program,
from JAX's own ``jax.monitoring`` events, and persistent-cache hits.

Used by ``bench`` (the compile breakdown of each runner), by the toy whole-run child, and by the
training loop (the compilation count in ``summary.json``, the recompilation guard).
"""

from __future__ import annotations

import jax.monitoring


def program_name(fun_name: str) -> str:
    """``jit(train_period)`` -> ``train_period``: one name per program, however JAX wraps it."""
    name = fun_name
    for prefix in ("jit(", "pmap(", "xla_pmap(", "pjit("):
        if name.startswith(prefix) and name.endswith(")"):
            name = name[len(prefix):-1]
    return name


class CompileLog:
    """While active (``with CompileLog() as log``): seconds of tracing, lowering and XLA compiling
    per program, how many programs were built (``compiles``, per program in ``counts``) and how many
    of those came from the persistent compilation cache (``cache_hits``).

    A program is counted once per executable built: XLA's compile event fires for every build,
    whether the persistent cache then supplies the binary or XLA compiles it, so the count is the
    same with the cache warm or cold.
    """

    PARTS = {"jaxpr_trace_duration": "trace", "jaxpr_to_mlir_module_duration": "lower",
             "backend_compile_duration": "compile"}

    def __init__(self) -> None:
        self.programs: dict[str, dict[str, float]] = {}   # program name -> {part: seconds}
        self.counts: dict[str, int] = {}                  # program name -> executables built
        self.cache_hits = 0

    @property
    def compiles(self) -> int:
        """Executables built, all programs together."""
        return sum(self.counts.values())

    def _on_duration(self, name: str, secs: float, fun_name: str = "?", **_) -> None:
        part = self.PARTS.get(name.rsplit("/", 1)[-1])
        if part:
            key = program_name(fun_name)
            prog = self.programs.setdefault(key, {})
            prog[part] = prog.get(part, 0.0) + secs
            if part == "compile":
                self.counts[key] = self.counts.get(key, 0) + 1

    def _on_event(self, name: str, **_) -> None:
        self.cache_hits += name.endswith("cache_hits")

    def __enter__(self) -> CompileLog:
        self._listeners = (self._on_duration, self._on_event)
        jax.monitoring.register_event_duration_secs_listener(self._listeners[0])
        jax.monitoring.register_event_listener(self._listeners[1])
        return self

    def __exit__(self, *exc) -> None:
        jax.monitoring.unregister_event_duration_listener(self._listeners[0])
        jax.monitoring.unregister_event_listener(self._listeners[1])

    def total(self, part: str) -> float:
        return sum(p.get(part, 0.0) for p in self.programs.values())

    def costliest(self, n: int = 8) -> list[tuple[str, dict[str, float]]]:
        return sorted(self.programs.items(), key=lambda kv: -sum(kv[1].values()))[:n]

    def summary(self) -> dict:
        """What ``summary.json`` records: programs built (in total and per program) and cache hits."""
        return {"count": self.compiles, "programs": dict(sorted(self.counts.items())),
                "cache_hits": self.cache_hits}
