"""Validation and settings shared by the experiment configs."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import sys
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp

from numpy_mlp.model import parse_hidden
from train.analysis.compare import compare_runs
from train.errors import UsageError
from train.backends.torch_backend import TORCH_MISSING, torch_available


def setting(default, help: str, **kw):
    """A config field with its --help text: every field of an experiment's config is a flag."""
    return dataclasses.field(default=default, metadata={"help": help, **kw})


# The settings every experiment shares, with one help text each.
def seed_setting():
    return setting(0, "random seed: same seed and config give the same numbers")


def devices_setting():
    return setting(0, "data-parallel devices (jax.pmap over local devices); 0 = all local devices, "
                      "1 = plain single-device jit")


def precision_setting():
    return setting("fp32", "compute precision: fp32 (full fp32 matmuls, as PyTorch), tf32 (fp32 with TF32 "
                           "matmuls and convolutions, XLA's GPU default), bf16, or auto (bf16 on GPU, fp32 on "
                           "CPU); params, optimizer and loss stay fp32")


def eval_train_setting():
    return setting(False, "evaluate the whole training split in eval mode after each epoch; by default the train "
                          "loss/accuracy of an epoch is the mean over its training steps (train mode), as the "
                          "original measured")


def epochs_setting(default: int):
    return setting(default, "training epochs (one compiled call each, evaluation after each)")


HIDDEN_HELP = "hidden layer sizes, comma-separated, e.g. '20' or '1024,512'"
BATCH_HELP = "(global) mini-batch size"

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
    return "bf16" if jax.devices()[0].platform == "gpu" else "fp32"


class WithPrecision:
    """For a config with a ``precision`` field: the precision it resolves to here ('auto' decided)."""

    def precision_resolved(self) -> str:
        return resolve_precision(self.precision)


def compute_dtype(precision: str):
    return jnp.bfloat16 if resolve_precision(precision) == "bf16" else jnp.float32


def precision_scope(precision: str):
    """The context in which a run traces and compiles: the matmul precision ``precision`` implies."""
    return jax.default_matmul_precision(MATMUL_PRECISION[resolve_precision(precision)])


def x64_scope(dtype: str | None):
    """JAX's 64-bit mode for a float64 run, and for that run only: its arrays and programs, and no
    other run's (JAX keys its compiled programs by this mode too, so none is shared across it)."""
    return jax.enable_x64(True) if dtype == "float64" else contextlib.nullcontext()


def under_precision(train_fn):
    """Decorator: run ``train_fn(cfg, ...)`` in ``precision_scope(cfg.precision)`` (a config without a
    precision, e.g. the toy MLP's, is fp32; for a list of configs, the first one's) and, for a
    ``dtype="float64"`` config, in ``x64_scope``."""
    @functools.wraps(train_fn)
    def run(cfg, *args, **kwargs):
        first = cfg[0] if isinstance(cfg, list) else cfg
        with precision_scope(getattr(first, "precision", "fp32")), x64_scope(getattr(first, "dtype", None)):
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


@dataclasses.dataclass(frozen=True)
class Experiment:
    """An experiment as the command line, the report and the Python API see it.

    ``main(cfg, out, progress=, resume=, checkpoint_every=)`` trains under the results root ``out``
    and returns the summary (or summaries). Every field of the config is a setting (a flag), except
    those in ``fixed``, which the experiment sets itself (e.g. ``model`` for ``cnn-cifar``).
    """

    name: str
    help: str
    description: str
    defaults: object          # () -> config
    quick: object             # () -> the tiny smoke-test config
    main: object
    fixed: tuple[str, ...] = ()
    checkpoint_every: int | None = None   # the default: None = every epoch the writer is free; 0 = off


def train_each_framework(cfg, candidates: tuple[str, ...], train: Callable, workdir: Path) -> dict:
    """``--framework all``: ``train(cfg)`` once per framework of ``candidates`` (PyTorch only where it is
    installed, with a note), then compare their run folders; returns {framework: summary, "compare": doc}."""
    chosen = [fw for fw in candidates if fw != "torch" or torch_available()]
    if len(chosen) < len(candidates):
        print(f"note: --framework all: {TORCH_MISSING}; PyTorch left out", file=sys.stderr)
    out = {fw: train(dataclasses.replace(cfg, framework=fw)) for fw in chosen}
    if len(chosen) > 1:
        runs = [workdir / dataclasses.replace(cfg, framework=fw).run_name for fw in chosen]
        out["compare"] = compare_runs(runs, workdir / f"{cfg.run_name}-compare")
    return out
