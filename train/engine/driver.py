"""One driver for every experiment's runs: resume check, run folder, config.json, loop, summary, figures.

An experiment prepares its data and a backend; :func:`drive` does the rest, the same way for
every experiment and framework, and for seeds trained side by side (one backend, several runs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from train.backends.jax_compile_log import CompileLog
from train.engine.loop import check_resumable, train_loop
from train.engine.results import (device_info, finish_run, make_summary, one_line, package_versions, prepare_run_dir,
                           run_config, start_attempt)


@dataclass
class Run:
    """One run: its settings, where it goes, and what it adds to config.json and summary.json.

    ``after(run_dir, log, summary)`` writes the run's figures and extra files once it has trained,
    and may add fields to ``summary`` (it is called before summary.json is written).
    """

    experiment: str
    cfg: Any
    workdir: Path
    run_name: str
    framework: str = "jax"
    record: dict = field(default_factory=dict)        # extra config.json fields (data source, sizes)
    summary: dict = field(default_factory=dict)       # extra summary.json fields
    after: Callable[[Path, Any, dict], None] | None = None

    @property
    def config(self) -> dict:
        return run_config(self.cfg)


def open_runs(runs: Sequence[Run], *, resume: bool) -> list[Path]:
    """Check that a resume continues the same settings, then create and lock every run folder."""
    if resume:
        for r in runs:
            check_resumable(r.workdir / r.run_name, r.config)
    return [prepare_run_dir(r.workdir.parent, r.workdir.name, r.run_name) for r in runs]


def backend_devices(backend) -> dict:
    """Where ``backend`` trains: its own record (a PyTorch run on CUDA, a NumPy run on the CPU), else JAX's devices."""
    return backend.device_info() if hasattr(backend, "device_info") else device_info()


def write_configs(runs: Sequence[Run], run_dirs: Sequence[Path], backend, *, resume: bool) -> None:
    devices = backend_devices(backend)
    for r, d in zip(runs, run_dirs):
        start_attempt(d, {"experiment": r.experiment, "framework": r.framework, "config": r.config, **r.record,
                          "versions": package_versions(), "devices": devices}, resume=resume)


def drive(runs: Sequence[Run], make_backend: Callable[[], Any], schedule, *, resume: bool = False,
          checkpoint_every: int | None = None, progress: bool | None = None, epochs: bool = True,
          desc: str = "", before: Callable[[Any], None] | None = None) -> list[dict]:
    """Train ``runs`` (one, or several seeds side by side in one backend); return their summaries.

    ``before(backend)`` runs once config.json is written, before the first step (e.g. to measure
    something at initialisation).
    """
    run_dirs = open_runs(runs, resume=resume)
    with CompileLog() as setup:   # building the model, its initial state, measurements before training
        backend = make_backend()
        write_configs(runs, run_dirs, backend, resume=resume)
        if before is not None:
            before(backend)
    multi = len(runs) > 1
    out = train_loop(backend, schedule, run_dirs if multi else run_dirs[0], resume=resume,
                     checkpoint_every=checkpoint_every, epochs=epochs, desc=desc, progress=progress)
    for _, timing in (out if multi else [out]):
        # The counts are XLA programs; ``compiler`` says how the backend itself runs (torch-eager, numpy).
        timing["compilations"].update(setup=setup.compiles, compiler=getattr(backend, "compiler", "xla"))
    return [close_run(r, d, log, timing, backend)
            for r, d, (log, timing) in zip(runs, run_dirs, out if multi else [out])]


def close_run(run: Run, run_dir: Path, log, timing: dict, backend) -> dict:
    """summary.json (after the run's figures and files), and the one-line result on stdout."""
    summary = make_summary(run.experiment, run.framework, log.rows, timing, param_count=backend.param_count,
                           devices=backend.devices, platform=backend_devices(backend)["platform"],
                           extra=dict(run.summary))
    if run.after is not None:
        run.after(run_dir, log, summary)
    summary = finish_run(run_dir, summary)
    print(one_line(summary))
    return summary
