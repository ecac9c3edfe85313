"""Validation and settings shared by the experiment configs."""

from __future__ import annotations

from train.results import UsageError

PRECISIONS = ("fp32", "bf16", "auto")


def resolve_precision(precision: str) -> str:
    """'auto' -> bf16 on GPU (where it is native and fast), fp32 elsewhere (bf16 is emulated on CPU)."""
    if precision != "auto":
        return precision
    import jax
    return "bf16" if jax.devices()[0].platform == "gpu" else "fp32"


def compute_dtype(precision: str):
    import jax.numpy as jnp
    return jnp.bfloat16 if resolve_precision(precision) == "bf16" else jnp.float32


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def require_positive(cfg, *names: str) -> None:
    for name in names:
        if getattr(cfg, name) <= 0:
            raise UsageError(f"{flag(name)} must be positive, got {getattr(cfg, name)}")


def require_common(cfg) -> None:
    """The checks every experiment shares: devices (0 = all) and, where the config has one, precision."""
    if cfg.devices < 0:
        raise UsageError(f"--devices must be >= 0 (0 = all local devices), got {cfg.devices}")
    if hasattr(cfg, "precision") and cfg.precision not in PRECISIONS:
        raise UsageError(f"--precision must be one of {', '.join(PRECISIONS)}, got {cfg.precision!r}")


def eval_splits(cfg) -> tuple[str, ...]:
    """The splits evaluated after each epoch; without ``train``, the loop uses the epoch's step means."""
    return ("train", "test") if cfg.eval_train else ("test",)
