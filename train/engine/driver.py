"""One driver for every experiment's runs: reuse, resume or train; run folder, config.json, loop, summary, figures.

An experiment prepares its data and a backend; :func:`drive` does the rest the same way for all.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from train.engine import tools
from train.engine.loop import train_loop
from train.engine.results import (config_digest, finish_run, make_summary, one_line, package_versions,
                                  prepare_run_dir, run_config, run_identity, start_attempt)
from train.engine.run_files import damage, damage_note
from train.errors import UsageError


@dataclass
class Run:
    """One run's settings and folder. ``after(run_dir, log, summary, backend)`` writes figures and may
    add to ``summary`` before summary.json is written."""

    experiment: str
    cfg: Any
    workdir: Path
    run_name: str
    framework: str = "jax"
    record: dict = field(default_factory=dict)        # extra config.json fields (data source, sizes)
    summary: dict = field(default_factory=dict)       # extra summary.json fields
    after: Callable[[Path, Any, dict, Any], None] | None = None

    @property
    def config(self) -> dict:
        return run_config(self.cfg)


def open_runs(runs: Sequence[Run], *, resume: bool) -> list[Path]:
    """Check that a resume continues the same settings, then create and lock every run folder."""
    if resume:
        for r in runs:
            check_resumable(r.workdir / r.run_name, r.config)
    return [prepare_run_dir(r.workdir.parent, r.workdir.name, r.run_name) for r in runs]


def write_configs(runs: Sequence[Run], run_dirs: Sequence[Path], backend, *, resume: bool) -> None:
    devices = backend.device_info()
    for r, d in zip(runs, run_dirs):
        start_attempt(d, {"experiment": r.experiment, "framework": r.framework, "config": r.config, **r.record,
                          "versions": package_versions(), "devices": devices}, resume=resume)


def drive(runs: Sequence[Run], make_backend: Callable[[], Any], schedules: Sequence, *, resume: bool = False,
          checkpoint_every: int | None = None, progress: bool | None = None, epochs: bool = True,
          desc: str = "", before: Callable[[Any], None] | None = None) -> list[dict]:
    """Train ``runs`` on one backend, run ``s`` over ``schedules[s]`` -> their summaries. ``before(backend)``
    runs before the first step, e.g. to measure something at initialisation."""
    run_dirs = open_runs(runs, resume=resume)
    with tools.compile_log() as setup:   # building the model, its initial state, measurements before training
        backend = make_backend()
        write_configs(runs, run_dirs, backend, resume=resume)
        if before is not None:
            before(backend)
    out = train_loop(backend, schedules, run_dirs, resume=resume, checkpoint_every=checkpoint_every,
                     epochs=epochs, desc=desc, progress=progress)
    for _, timing in out:
        # The counts are XLA programs; ``compiler`` says how the backend itself runs (torch-eager, numpy).
        timing["compilations"].update(setup=setup.compiles, compiler=getattr(backend, "compiler", "xla"))
    return [close_run(r, d, log, timing, backend) for r, d, (log, timing) in zip(runs, run_dirs, out)]


def close_run(run: Run, run_dir: Path, log, timing: dict, backend) -> dict:
    """summary.json (after the run's figures and files), and the one-line result on stdout."""
    summary = make_summary(run.experiment, run.framework, log.rows, timing, param_count=backend.param_count,
                           devices=backend.devices, platform=backend.device_info()["platform"],
                           extra={**run.summary, **getattr(backend, "side_by_side", {})})
    if run.after is not None:
        run.after(run_dir, log, summary, backend)
    summary = finish_run(run_dir, summary)
    print(one_line(summary))
    return summary


# -- reuse a finished run, else resume it, else train it ------------------------------------------
def check_resumable(run_dir: Path, config: dict) -> None:
    """Before anything is written: --resume needs a checkpoint, and the same config as the run it continues."""

    config = json.loads(json.dumps(config))  # as config.json holds it (tuples become lists)
    ckpt_dir = Path(run_dir) / "checkpoints"
    if not ckpt_dir.is_dir() or not any(p.name.isdigit() for p in ckpt_dir.iterdir()):
        raise UsageError(f"--resume: no checkpoint to resume from in {ckpt_dir}")
    try:
        saved = json.loads((Path(run_dir) / "config.json").read_text())["config"]
    except (OSError, ValueError, KeyError):
        return  # the checkpoint itself is authoritative; nothing to compare against
    changed = sorted(k for k in set(saved) | set(config) if saved.get(k) != config.get(k))
    if changed:
        raise UsageError(f"--resume: the settings differ from the checkpointed run in {run_dir} "
                         f"({', '.join(changed)}); pass the same flags, or drop --resume to start over")


def completed_summary(run_dir: Path, config: dict) -> dict | None:
    """The summary of a run finished with exactly ``config`` and intact result files, else None
    (docs/resilience.md, "A summary only for a finished attempt")."""

    try:
        summary = json.loads((Path(run_dir) / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    identity = run_identity(run_dir)
    mine = {k: summary.get(k) for k in ("attempt", "config_digest")}
    if not identity or mine != identity or identity["config_digest"] != config_digest(config):
        return None
    return None if damage(run_dir, summary) else summary


def _resumable(run_dirs: Sequence[Path], configs: Sequence[dict]) -> bool:
    """True if every one of these runs has a checkpoint made with its exact settings."""
    try:
        for d, c in zip(run_dirs, configs):
            check_resumable(d, c)
    except UsageError:
        return False
    return True


def reuse_resume_or_train(run_dirs: Sequence[Path], configs: Sequence[dict],
                          train: Callable[[list[int], bool], list[dict]], *, reuse: bool = True, resume: bool = True,
                          label: str | None = None, log: list[str] | None = None,
                          together: Callable[[], bool] | None = None) -> list[dict]:
    """Every run's summary: finished runs are read back, the rest resume if all can, else train afresh.

    ``train(todo, resume)`` trains the runs numbered ``todo``. ``together``: whether what runs made
    as one write beside their folders is intact; if not, all train again.
    """
    run_dirs = [Path(d) for d in run_dirs]
    done = [completed_summary(d, c) if reuse else None for d, c in zip(run_dirs, configs)]
    todo = [i for i, s in enumerate(done) if s is None]
    if together is not None and reuse and not together() and not todo:
        todo = list(range(len(run_dirs)))
    label = label or str(run_dirs[0])
    say = log.append if log is not None else (lambda line: None)
    if not todo:
        say(f"reused {label}")
        return done
    why = damage_note(*(run_dirs[i] for i in todo)) if reuse else ""
    if resume and _resumable([run_dirs[i] for i in todo], [configs[i] for i in todo]):
        say(f"resumed {label}{why}")
        try:
            return _fill(done, todo, train(todo, True))
        except UsageError:
            pass
    say(f"ran {label}{why}")
    return _fill(done, todo, train(todo, False))


def _fill(done: list, todo: list[int], got: Sequence[dict]) -> list[dict]:
    out = list(done)
    for i, s in zip(todo, got, strict=True):
        out[i] = s
    return out
