"""``--seeds K``: an experiment's seeds seed, seed+1, ..., seed+K-1, each an ordinary run folder.

Every seed writes the folder, config.json and files ``--seed s`` alone writes (K is no setting of the
run: it stays out of config.json and its digest), so each resumes alone and a report reuses it. JAX
trains the seeds side by side in one vmapped program, split over the local devices, where one process
allows (``jax_multiseed``); elsewhere, and in PyTorch and NumPy, they train in turn. Several frameworks:
every framework's seeds, then one comparison grouped by framework.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from train.analysis.compare import compare_runs
from train.backends import base
from train.backends.jax_multiseed import vmap_supported
from train.backends.jax_trainer import select_devices
from train.engine.driver import reuse_resume_or_train
from train.engine.results import run_config
from train.errors import UsageError
from train.experiments.common import note_missing, several

# (configs of one framework, differing in seed only; the framework; resume as the loop's) -> their summaries.
TrainMany = Callable[[list, str, bool], list[dict]]


def check(seeds, seed: int) -> None:
    """--seeds is a positive integer, and the last seed a seed every generator here accepts."""
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise UsageError(f"--seeds must be a positive integer, got {seeds!r}")
    if seed + seeds - 1 >= 2**32:
        raise UsageError(f"--seed {seed} --seeds {seeds}: the last seed {seed + seeds - 1} is over {2**32 - 1}")


def together_here(cfg) -> bool:
    """Whether JAX seeds of ``cfg`` share one program: one process (its devices split the seeds)."""
    select_devices(cfg.devices, cfg.batch_size)  # a bad --devices fails here, before anything is written
    return vmap_supported()


def train_framework(cfgs: Sequence, framework: str, run_dirs: Sequence[Path], *, alone: TrainMany,
                    together: TrainMany | None, resume: bool) -> list[dict]:
    """One framework's seeds: side by side (``together``) or in turn (``alone``, one config at a time).

    ``resume``: the sweep's rule: finished runs are read back, the rest continue from their checkpoints
    if all can, else train afresh."""
    def train(todo: list[int], cont: bool) -> list[dict]:
        if together is not None and len(todo) > 1:
            return together([cfgs[i] for i in todo], framework, cont)
        return [s for i in todo for s in alone([cfgs[i]], framework, cont)]

    if not resume:
        return train(list(range(len(cfgs))), False)
    return reuse_resume_or_train(run_dirs, [run_config(c) for c in cfgs], train, reuse=True, resume=True)


def run_seeds(cfg, seeds: int, chosen: base.Chosen, workdir: Path, *, name: str, alone: TrainMany,
              together: TrainMany, resume: bool, compare_name: str, keyed: bool = False,
              framework_config: Callable | None = None, run_name: Callable | None = None):
    """Seeds ``cfg.seed .. cfg.seed + seeds - 1`` in every framework of ``chosen``.

    Returns the list of summaries (one per seed) of a single framework, or ``{framework: list, "compare":
    doc}`` for several (and with ``keyed``, as an experiment that keys even one framework's summary).
    ``framework_config(cfg, fw)``: the config a framework's runs record (default: ``framework`` set to
    it where ``cfg`` names several); ``run_name(cfg, fw)``: its run folder's name (default ``run_name``).
    """
    check(seeds, cfg.seed)
    framework_config = framework_config or (
        lambda c, fw: dataclasses.replace(c, framework=fw) if several(c.framework) else c)
    run_name = run_name or (lambda c, fw: c.run_name)
    shared = together_here(cfg)
    if not shared and "jax" in chosen:
        print(f"note: {name} trains the seeds one after the other: seeds share one program only in a single "
              f"process", file=sys.stderr)
    if several(cfg.framework):
        note_missing(chosen)
    out, dirs = {}, []
    for fw in chosen:
        base_cfg = framework_config(cfg, fw)
        cfgs = [dataclasses.replace(base_cfg, seed=cfg.seed + s) for s in range(seeds)]
        run_dirs = [workdir / run_name(c, fw) for c in cfgs]
        out[fw] = train_framework(cfgs, fw, run_dirs, alone=alone, together=together if fw == "jax" and shared else None,
                                  resume=resume)
        dirs += run_dirs
    if len(chosen) > 1:
        out["compare"] = compare_runs(dirs, workdir / compare_name, by="framework")
    return out if keyed or several(cfg.framework) else out[chosen[0]]
