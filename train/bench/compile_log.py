"""Where compilation time goes: trace, lower and XLA compile per program, from JAX's own events."""

from __future__ import annotations

import jax.monitoring


class CompileLog:
    """While active (``with CompileLog() as log``): seconds of tracing, lowering and XLA compiling
    per program, from ``jax.monitoring`` events, and persistent-cache hits."""

    PARTS = {"jaxpr_trace_duration": "trace", "jaxpr_to_mlir_module_duration": "lower",
             "backend_compile_duration": "compile"}

    def __init__(self) -> None:
        self.programs: dict[str, dict[str, float]] = {}   # program name -> {part: seconds}
        self.compiles = 0
        self.cache_hits = 0

    def _on_duration(self, name: str, secs: float, fun_name: str = "?", **_) -> None:
        part = self.PARTS.get(name.rsplit("/", 1)[-1])
        if part:
            prog = self.programs.setdefault(fun_name.removeprefix("jit(").removesuffix(")"), {})
            prog[part] = prog.get(part, 0.0) + secs
            self.compiles += part == "compile"

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
