"""Compute precision as a value: resolved once from the ``--precision`` flag and the platform.

The experiments, the backends and the bench read this one table. Parameters, optimizer state
and the loss stay fp32 at every precision.
"""

from __future__ import annotations

from dataclasses import dataclass

NAMES = ("fp32", "tf32", "bf16")
CHOICES = (*NAMES, "auto")
# Platforms where bf16 is native and fast; elsewhere (a CPU) it is emulated.
ACCELERATORS = ("gpu", "cuda")


@dataclass(frozen=True)
class Precision:
    """How a run computes. ``matmul`` is JAX's ``default_matmul_precision`` for fp32 matmuls and
    convolutions: "highest" is full fp32, as PyTorch computes them by default; "default" is TF32 on a
    GPU (10-bit-mantissa products)."""

    name: str            # fp32, tf32 or bf16
    compute_dtype: str   # activations and matmul inputs: float32 or bfloat16
    matmul: str          # "highest" or "default"
    tf32: bool           # PyTorch's TF32 switch for its fp32 matmuls and convolutions on CUDA (off under autocast)

    @property
    def autocast(self) -> bool:
        """PyTorch computes under bf16 autocast."""
        return self.compute_dtype == "bfloat16"


TABLE = {
    "fp32": Precision("fp32", "float32", "highest", tf32=False),
    "tf32": Precision("tf32", "float32", "default", tf32=True),
    "bf16": Precision("bf16", "bfloat16", "default", tf32=False),
}


def resolve(flag: str, platform: str) -> Precision:
    """The precision ``flag`` means on ``platform`` (a JAX or PyTorch platform name): ``auto`` is bf16 on
    an accelerator, fp32 elsewhere."""
    if flag == "auto":
        flag = "bf16" if platform in ACCELERATORS else "fp32"
    try:
        return TABLE[flag]
    except KeyError:
        raise ValueError(f"precision must be one of {', '.join(CHOICES)}, got {flag!r}") from None
