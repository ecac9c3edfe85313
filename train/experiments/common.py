"""Validation and settings shared by the experiment configs."""

from __future__ import annotations

import functools

from train.results import UsageError

PRECISIONS = ("fp32", "tf32", "bf16", "auto")
# What the compute precisions mean for matmuls and convolutions (jax.default_matmul_precision):
# fp32 is full fp32, as PyTorch computes fp32 matmuls by default; tf32 is XLA's GPU default (fp32
# storage, 10-bit-mantissa products, in which the vanilla RNN's faint long-range gradients most
# likely drown).
MATMUL_PRECISION = {"fp32": "highest", "tf32": "default", "bf16": "default"}


def resolve_precision(precision: str) -> str:
    """'auto' -> bf16 on GPU (where it is native and fast), fp32 elsewhere (bf16 is emulated on CPU)."""
    if precision != "auto":
        return precision
    import jax
    return "bf16" if jax.devices()[0].platform == "gpu" else "fp32"


def compute_dtype(precision: str):
    import jax.numpy as jnp
    return jnp.bfloat16 if resolve_precision(precision) == "bf16" else jnp.float32


def precision_scope(precision: str):
    """The context in which a run traces and compiles: the matmul precision ``precision`` implies."""
    import jax
    return jax.default_matmul_precision(MATMUL_PRECISION[resolve_precision(precision)])


def under_precision(train_fn):
    """Decorator: run ``train_fn(cfg, ...)`` in ``precision_scope(cfg.precision)`` (a config without a
    precision, e.g. the toy MLP's, is fp32; for a list of configs, the first one's)."""
    @functools.wraps(train_fn)
    def run(cfg, *args, **kwargs):
        first = cfg[0] if isinstance(cfg, list) else cfg
        with precision_scope(getattr(first, "precision", "fp32")):
            return train_fn(cfg, *args, **kwargs)
    return run


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def require_positive(cfg, *names: str) -> None:
    for name in names:
        if getattr(cfg, name) <= 0:
            raise UsageError(f"{flag(name)} must be positive, got {getattr(cfg, name)}")


def require_hidden(cfg) -> None:
    """The hidden-sizes string ('20', '1024,512,...') of an MLP config parses."""
    from numpy_mlp.model import parse_hidden
    try:
        parse_hidden(cfg.hidden)
    except ValueError as e:
        raise UsageError(str(e)) from None


def require_common(cfg) -> None:
    """The checks every experiment shares: seed, devices (0 = all) and, where the config has one, precision."""
    if not 0 <= cfg.seed < 2**32:  # what every seeded generator here (numpy, JAX keys) accepts
        raise UsageError(f"--seed must be in [0, {2**32 - 1}], got {cfg.seed}")
    if cfg.devices < 0:
        raise UsageError(f"--devices must be >= 0 (0 = all local devices), got {cfg.devices}")
    if isinstance(getattr(cfg, "hidden", None), str):
        require_hidden(cfg)
    if hasattr(cfg, "precision") and cfg.precision not in PRECISIONS:
        raise UsageError(f"--precision must be one of {', '.join(PRECISIONS)}, got {cfg.precision!r}")


def eval_splits(cfg) -> tuple[str, ...]:
    """The splits evaluated after each epoch; without ``train``, the loop uses the epoch's step means."""
    return ("train", "test") if cfg.eval_train else ("test",)
