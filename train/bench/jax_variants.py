"""JAX variants of the fused period for a GPU, each a bench mode, each checked against ``fused``.

A variant is the same training program compiled with other XLA options (passed per compile, so one
process times them side by side). Command buffers (CUDA graphs) replay a recorded sequence of
kernels with one launch; XLA records fusions and library calls by default, and can also record a
``while`` loop (the fused period, or an RNN's time steps) or unroll it into the graph. XLA:CPU
has no command buffers: it checks the option names and compiles the same program.

Exactness: the variant's parameters after its first window must equal ``fused``'s. On a GPU,
scatters (gather gradients, max pool's backward) add with atomics in no fixed order, so two runs of
one program may differ; ``fused`` runs its first window twice and that difference is the noise
floor a variant is held to.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import numpy as np

# The types XLA records in command buffers by default, plus loops (WHILE, CONDITIONAL).
_LOOP_TYPES = "FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL,CUDNN,WHILE,CONDITIONAL"
VARIANTS: dict[str, dict] = {
    "fused-cb-off": {"xla_gpu_enable_command_buffer": ""},
    "fused-cb-loop": {"xla_gpu_enable_command_buffer": _LOOP_TYPES},
    "fused-cb-unroll": {"xla_gpu_enable_command_buffer": _LOOP_TYPES,
                        "xla_gpu_command_buffer_unroll_loops": True},
}
CPU_NOTE = ("GPU options (command buffers): XLA:CPU checks their names and compiles the same "
            "program as fused")


@dataclass
class Reference:
    """``fused``'s parameters after its first window, and how far a second identical run landed."""

    params: list[np.ndarray]
    noise: float


def host_params(state) -> list[np.ndarray]:
    return [np.asarray(x, np.float64) for x in jax.tree.leaves(jax.device_get(state.params))]


def max_abs_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return max((float(np.max(np.abs(x - y))) for x, y in zip(a, b, strict=True) if x.size),
               default=0.0)


def reference(first, replay) -> Reference:
    """From ``fused``'s state after its first window and that window replayed from the start."""
    params = host_params(first)
    return Reference(params, max_abs_diff(params, host_params(replay)))


def exactness(state, ref: Reference | None) -> dict:
    """A variant's first-window parameters against ``fused``'s: the largest difference, the noise
    floor, and the verdict ("bitwise", "within run-to-run noise", "differs")."""
    if ref is None:
        return {"verdict": "unchecked: no fused record at this precision"}
    diff = max_abs_diff(host_params(state), ref.params)
    verdict = ("bitwise" if diff == 0 else "within run-to-run noise" if diff <= ref.noise
               else "differs")
    return {"max_abs_diff": diff, "noise_floor": ref.noise, "verdict": verdict}
