"""Work and memory of a compiled training step, and the device's peak: FLOPs, bytes, utilisation.

FLOPs and bytes come from XLA's cost analysis, normalised per step against the one-step program
as XLA versions count a loop body differently (:func:`per_step_cost`). Peaks come from data sheets,
else a matmul measured in the run. See docs/benchmarks.md.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

# Dense (no sparsity) peak TFLOP/s by device kind (matched as a lower-case substring of JAX's
# device_kind, most specific first) and bench precision: fp32 is full fp32 (CUDA cores), tf32 and
# bf16 the tensor cores. Vendors' data sheets; SXM parts unless named.
PEAK_TFLOPS: tuple[tuple[str, dict[str, float]], ...] = (
    ("h100 pcie", {"fp32": 51.2, "tf32": 378.0, "bf16": 756.0}),
    ("h100", {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4}),
    ("h200", {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4}),
    ("gh200", {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4}),
    ("a100", {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0}),
    ("l4", {"fp32": 30.3, "tf32": 60.0, "bf16": 121.0}),
    ("a10", {"fp32": 31.2, "tf32": 62.5, "bf16": 125.0}),
    ("v100", {"fp32": 15.7, "tf32": 15.7, "bf16": 125.0}),   # no TF32 or bf16 tensor cores: fp16's
)


def first_program(analysis) -> dict | None:
    """``cost_analysis()``'s answer as one dict (older JAX: a list with one dict per program)."""
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0] if analysis else None
    return dict(analysis) if analysis else None


def cost_of(stage) -> dict | None:
    """``{"flops", "bytes_accessed"}`` of a compiled (or lowered) program; None where unreported."""
    try:
        c = first_program(stage.cost_analysis())
    except Exception:  # noqa: BLE001 - not every backend implements it
        return None
    if not c or c.get("flops") is None:
        return None
    return {"flops": float(c["flops"]), "bytes_accessed": float(c.get("bytes accessed", 0.0))}


def memory_of(compiled) -> dict | None:
    """XLA's memory analysis of a compiled program, in bytes; None where the backend has none."""
    try:
        m = compiled.memory_analysis()
        out = {"argument_bytes": int(m.argument_size_in_bytes),
               "output_bytes": int(m.output_size_in_bytes),
               "temp_bytes": int(m.temp_size_in_bytes),
               "alias_bytes": int(m.alias_size_in_bytes),
               "generated_code_bytes": int(m.generated_code_size_in_bytes)}
    except Exception:  # noqa: BLE001
        return None
    # Donated arguments alias outputs: the program needs them resident once.
    out["total_bytes"] = (out["argument_bytes"] + out["output_bytes"] + out["temp_bytes"]
                          - out["alias_bytes"])
    return out


def per_step_cost(program: dict | None, one_step: dict | None, steps: int) -> dict | None:
    """Per-step FLOPs and bytes of a ``steps``-step program; ``one_step`` tells whether XLA counted
    the loop body once or ``steps`` times. ``source`` names the figures used."""
    if program is None:
        if one_step is None:
            return None
        return {**one_step, "source": "XLA cost analysis of the lowered one-step program"}
    scale = 1
    if steps > 1 and one_step and one_step["flops"] > 0:
        # Counted once: ~1x the step; counted per trip: ~steps x. Closer to which, on a log scale?
        ratio = program["flops"] / one_step["flops"]
        scale = steps if ratio > np.sqrt(steps) else 1
    return {"flops": program["flops"] / scale, "bytes_accessed": program["bytes_accessed"] / scale,
            "source": "XLA cost analysis of the compiled program"
                      + (f" / {steps} steps" if scale > 1 else "")}


def table_peak(device_kind: str, precision: str) -> float | None:
    """The data-sheet peak FLOP/s of one device of this kind at ``precision``, None if unknown."""
    kind = device_kind.lower()
    for key, peaks in PEAK_TFLOPS:
        if key in kind:
            return peaks[precision] * 1e12
    return None


def measure_matmul_peak(dtype=jnp.float32, n: int = 1024, reps: int = 5, device=None) -> float:
    """FLOP/s of the fastest of ``reps`` ``n x n`` matmuls at ``dtype`` (matmul precision highest):
    what this device (here, with the machine's other load) reaches on the most favourable kernel."""
    device = device or jax.local_devices()[0]
    a = jax.device_put(jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), dtype), device)
    with jax.default_matmul_precision("highest"):
        f = jax.jit(lambda x: x @ x)
        f(a).block_until_ready()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        f(a).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return 2.0 * n ** 3 / best


class Peaks:
    """The peak FLOP/s each record's utilisation is measured against, with where it came from:
    the data sheet (:data:`PEAK_TFLOPS`) for a known accelerator, else a matmul micro-benchmark
    run once per dtype in this process."""

    def __init__(self, device=None) -> None:
        self.device = device or jax.local_devices()[0]
        self._measured: dict[str, float] = {}

    def get(self, precision: str) -> tuple[float | None, str]:
        kind = self.device.device_kind
        peak = table_peak(kind, precision) if self.device.platform != "cpu" else None
        if peak is not None:
            return peak, f"data sheet: {kind} {precision} dense"
        dtype = "bf16" if precision == "bf16" else "fp32"
        if dtype not in self._measured:
            try:
                self._measured[dtype] = measure_matmul_peak(
                    jnp.bfloat16 if dtype == "bf16" else jnp.float32, device=self.device)
            except Exception:  # noqa: BLE001 - no peak: utilisation is left out
                self._measured[dtype] = 0.0
        peak = self._measured[dtype] or None
        return peak, f"measured: fastest 1024x1024 {dtype} matmul in this run ({kind})"

    def remeasure(self) -> None:
        """Measure the CPU peaks again and keep the higher, as a busy moment lowers a peak."""
        for dtype, old in list(self._measured.items()):
            try:
                new = measure_matmul_peak(jnp.bfloat16 if dtype == "bf16" else jnp.float32,
                                          device=self.device)
            except Exception:  # noqa: BLE001
                new = 0.0
            self._measured[dtype] = max(old, new)


def annotate(records: list, peaks: Peaks | None) -> None:
    """Fill achieved FLOP/s and utilisation; PyTorch and NumPy records take a same-suite JAX record's FLOPs."""
    counts: dict[tuple[str, int], Any] = {}
    for r in records:
        if r.framework == "jax" and r.flops_per_step:
            counts.setdefault((r.suite, r.batch_size), (r.flops_per_step, r.bytes_accessed_per_step))
    for r in records:
        if r.skipped or not r.step_s or r.mode.startswith("whole-run"):
            continue
        if r.framework != "jax" and r.flops_per_step is None and (r.suite, r.batch_size) in counts:
            r.flops_per_step, _ = counts[(r.suite, r.batch_size)]
            r.extra["flops_source"] = "the JAX program's count (same model and batch)"
        if r.flops_per_step is None:
            continue
        r.flops_per_s = r.flops_per_step / r.step_s
        if peaks is not None:
            peak, source = peaks.get(r.precision)
            if peak:
                # A CPU's measured peak is the whole host's: simulated devices share its cores.
                r.peak_flops_per_s = peak * (r.devices if peaks.device.platform != "cpu" else 1)
                r.utilisation = r.flops_per_s / r.peak_flops_per_s
                r.extra["peak_source"] = source
