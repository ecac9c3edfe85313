"""Every experiment by name, and its settings from flags or from Python, validated the same way.

The command line (``python -m train NAME --flag ...``), the report and the Python API
(:func:`train.run`) all find experiments here. A new experiment is one module that defines a
config dataclass (help texts in its fields' metadata), a ``quick`` variant, a ``main`` and an
:class:`~train.experiments.common.Experiment` ``SPEC``, plus one line below.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import os
import types
import typing
from collections.abc import Callable
from pathlib import Path

from train import runtime
from train.experiments import cifar, mlp_toy, rnn, rnn_sweep
from train.experiments import seeds as seeds_mod
from train.experiments.common import Experiment
from train.engine.loop import resumable_as
from train.errors import UsageError

EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in (
    mlp_toy.SPEC,
    cifar.MLP_SPEC,
    cifar.CNN_SPEC,
    rnn.SPEC,
    rnn_sweep.SPEC,
)}


def get(name: str) -> Experiment:
    try:
        return EXPERIMENTS[name]
    except KeyError:
        raise UsageError(f"unknown experiment {name!r}; choose from {', '.join(EXPERIMENTS)}") from None


def settings(e: Experiment) -> list[dataclasses.Field]:
    """The config fields a user may set (every field but the experiment's fixed ones)."""
    return [f for f in dataclasses.fields(e.defaults()) if f.name not in e.fixed]


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def parse_bool(name: str) -> Callable[[str], bool]:
    def parse(text: str) -> bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise argparse.ArgumentTypeError(f"{flag(name)} must be true or false, got {text!r}")
    return parse


def field_type(f: dataclasses.Field) -> type:
    """The field's type, ``X | None`` read as X."""
    t = f.type if not isinstance(f.type, str) else eval(f.type, vars(typing))  # noqa: S307 - our own annotations
    if isinstance(t, types.UnionType) or typing.get_origin(t) is typing.Union:
        t = next(a for a in typing.get_args(t) if a is not type(None))
    return t


def parser_for(f: dataclasses.Field) -> Callable[[str], object]:
    """How a flag's text becomes the field's value."""
    t = field_type(f)
    return parse_bool(f.name) if t is bool else t


def add_flags(p: argparse.ArgumentParser, e: Experiment) -> None:
    """One --flag per setting, with its help text and default."""
    base = e.defaults()
    for f in settings(e):
        # A bare --flag means true for a bool setting; --flag false still works.
        as_bool = {"nargs": "?", "const": True, "metavar": "BOOL"} if field_type(f) is bool else {}
        p.add_argument(flag(f.name), dest=f.name, type=parser_for(f), default=None,
                       **{"metavar": f.name.upper(), **as_bool},
                       help=f"{f.metadata.get('help', f.name)} (default: {getattr(base, f.name)})")


def coerce(e: Experiment, f: dataclasses.Field, value):
    """A Python value for a setting, checked as the command line checks the flag's text."""
    if isinstance(value, str):
        try:
            return parser_for(f)(value)
        except (argparse.ArgumentTypeError, ValueError) as err:
            raise UsageError(f"{e.name}: {flag(f.name)}: {err}") from None
    t = field_type(f)
    ok = value is None and f.default is None or (
        isinstance(value, t) and not (t is int and isinstance(value, bool))) or (
        t is float and isinstance(value, int) and not isinstance(value, bool))
    if not ok:
        raise UsageError(f"{e.name}: {flag(f.name)} must be {t.__name__}, got {value!r}")
    return float(value) if t is float else value


def make_config(e: Experiment, given: dict, *, quick: bool = False):
    """The experiment's defaults (or its quick variant), with ``given`` settings, validated."""
    fields = {f.name: f for f in settings(e)}
    unknown = sorted(set(given) - set(fields))
    if unknown:
        raise UsageError(f"{e.name} has no setting {', '.join(map(repr, unknown))}; its settings: "
                         f"{', '.join(fields)}")
    cfg = dataclasses.replace(e.quick() if quick else e.defaults(),
                              **{k: coerce(e, fields[k], v) for k, v in given.items()})
    cfg.validate()
    return cfg


def loop_settings(e: Experiment, *, progress, resume: bool, checkpoint_every: int | None) -> dict:
    every = e.checkpoint_every if checkpoint_every is None else checkpoint_every
    if every is not None and every < 0:
        raise UsageError(f"--checkpoint-every must be >= 0, got {every}")
    return {"progress": progress, "resume": resume, "checkpoint_every": every}


def run(name: str, out: str | Path = "results", *, quick: bool = False, progress: bool | None = False,
        resume: bool = False, checkpoint_every: int | None = None, profile: str | Path | None = None,
        dump_hlo: str | Path | None = None, seeds: int | None = None, **given):
    """Train experiment ``name`` with these settings; return its summary (a dict, as summary.json).

    ``seeds=K`` (``--seeds K``) trains seeds seed .. seed + K - 1, each its own run folder, and returns
    a list of K summaries where one run returns one (``{framework: list, "compare": ...}`` where it
    returns one per framework); K = 1 is the plain run. K is no setting of a run: not in config.json.

    ``train.run("mlp-cifar", out="results", lr=3e-4, epochs=5)`` is ``python -m train mlp-cifar
    --out results --lr 3e-4 --epochs 5``: the same defaults, checks and results. A bad setting
    raises :class:`~train.engine.results.UsageError` with the message the command line prints.
    ``profile`` and ``dump_hlo`` are the ``--profile`` and ``--dump-hlo`` folders.
    """
    e = get(name)
    if seeds is not None and e.main_seeds is None:
        given = {**given, "seeds": seeds}  # rnn-sweep's own setting (an experiment without either rejects it)
        seeds = None
    cfg = make_config(e, given, quick=quick)
    kw = loop_settings(e, progress=progress, resume=resume, checkpoint_every=checkpoint_every)
    options = {"quick": quick, "progress": progress, "checkpoint_every": checkpoint_every, "profile": profile,
               "dump_hlo": dump_hlo, "seeds": seeds}
    with runtime.session(profile=profile, dump_hlo=dump_hlo), resumable_as(resume_call(name, out, options, given)):
        return main_for(e, seeds)(cfg, Path(out), **kw)


def main_for(e: Experiment, seeds: int | None) -> Callable:
    """How ``e`` trains ``seeds`` seeds (None or 1: its plain ``main``, whose return value is kept)."""
    if seeds is None or (e.main_seeds is None and seeds == 1):
        return e.main
    if e.main_seeds is None:
        raise UsageError(f"{e.name} has no --seeds")
    seeds_mod.check(seeds, 0)
    if seeds == 1:
        return e.main
    return lambda cfg, out, **kw: e.main_seeds(cfg, out, seeds, **kw)


def resume_call(name: str, out, options: dict, given: dict) -> str:
    """The ``train.run`` call that resumes a run: its own arguments (those not left at their
    defaults), then ``resume=True``."""
    defaults = {p.name: p.default for p in inspect.signature(run).parameters.values()}
    shown = {"out": out, **{k: v for k, v in options.items() if v != defaults[k]}, **given, "resume": True}
    literal = lambda v: repr(os.fspath(v) if isinstance(v, os.PathLike) else v)  # noqa: E731
    return f"train.run({name!r}, {', '.join(f'{k}={literal(v)}' for k, v in shown.items())})"
