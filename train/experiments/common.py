"""Validation and settings shared by the experiment configs."""

from __future__ import annotations

import dataclasses
import functools
import sys
from collections.abc import Callable
from pathlib import Path

import jax

from numpy_mlp.model import parse_hidden
from train import precision
from train.analysis.compare import compare_runs
from train.backends import base
from train.backends.jax_parallel import PARALLEL
from train.errors import UsageError
from train.precision import Precision


def setting(default, help: str, **kw):
    """A config field with its --help text: every field of an experiment's config is a flag."""
    return dataclasses.field(default=default, metadata={"help": help, **kw})


# The settings every experiment shares, with one help text each.
def seed_setting():
    return setting(0, "random seed: same seed and config give the same numbers")


def devices_setting():
    return setting(0, "data-parallel devices (local devices, on the --parallel path); 0 = all local devices, "
                      "1 = plain single-device jit")


def parallel_setting():
    return setting("pmap", "data-parallel path over the devices: pmap (per-device program, state replicated per "
                           "device), shard_map (the same program over a 1-D mesh, global arrays) or jit (the "
                           "global program, batch sharded, collectives by the compiler); on one device pmap "
                           "means plain jit")


def parallel_path(cfg, devices) -> str | None:
    """The trainer's path for ``cfg`` on ``devices`` (this process's): ``--parallel``, except that pmap on
    one device of one process is the plain single-device jit."""
    multi = len(devices) * jax.process_count() > 1
    return None if cfg.parallel == "pmap" and not multi else cfg.parallel


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


@functools.cache
def resolved_precision(flag: str) -> Precision:
    """The Precision ``--precision flag`` means where JAX runs here ('auto' decided once per process)."""
    return precision.resolve(flag, jax.devices()[0].platform)


class PrecisionSetting:
    """For a config with a ``precision`` field (the flag as given, which config.json keeps): its value."""

    @property
    def resolved_precision(self) -> Precision:
        return resolved_precision(self.precision)


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
    if hasattr(cfg, "parallel") and cfg.parallel not in PARALLEL:
        raise UsageError(f"--parallel must be one of {', '.join(PARALLEL)}, got {cfg.parallel!r}")
    if isinstance(getattr(cfg, "hidden", None), str):
        require_hidden(cfg)
    if hasattr(cfg, "precision") and cfg.precision not in precision.CHOICES:
        raise UsageError(f"--precision must be one of {', '.join(precision.CHOICES)}, got {cfg.precision!r}")


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
    # ``main_seeds(cfg, out, seeds, progress=, resume=, checkpoint_every=)``: --seeds K (None: no such flag)
    main_seeds: object = None


def framework_help(note: str = "") -> str:
    return (f"{', '.join(base.FRAMEWORKS)}, a comma list of them, or all (every one installed: the same initial "
            f"weights and batches, then compared){note}")


def several(framework: str) -> bool:
    """True when ``--framework`` names more than one framework (``all`` or a comma list)."""
    return framework == "all" or "," in framework


def train_each_framework(cfg, frameworks: base.Chosen, train: Callable, workdir: Path) -> dict:
    """``train(cfg)`` once per framework (those ``all`` left out as not installed get a note), then compare
    their run folders; returns {framework: summary, "compare": doc}."""
    note_missing(frameworks)
    out = {fw: train(dataclasses.replace(cfg, framework=fw)) for fw in frameworks}
    if len(frameworks) > 1:
        runs = [workdir / dataclasses.replace(cfg, framework=fw).run_name for fw in frameworks]
        out["compare"] = compare_runs(runs, workdir / f"{cfg.run_name}-compare")
    return out


def note_missing(frameworks: base.Chosen) -> None:
    for fw in frameworks.missing:
        print(f"note: --framework all: {base.module(fw).MISSING}; {base.module(fw).NAME} left out", file=sys.stderr)
