"""Part 3's sequence-length sweep: rnn-palindrome for every length, seed and cell, and its figures.

The seeds of one (cell, T) train side by side in one compiled program (``train_seeds_together``).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from train.analysis import plots
from train.experiments.common import Experiment, setting
from train.experiments.rnn import CELLS, EXPERIMENT, RNNConfig, quick, train_and_evaluate, train_seeds_together
from train.engine.driver import reuse_resume_or_train
from train.backends.jax_multiseed import vmap_supported
from train.engine.results import (run_config, atomic_write_json, is_writer, prepare_run_dir, read_jsonl,
                                  release_run_dir)
from train.errors import UsageError
from train.backends.jax_trainer import select_devices


def sweep(cfg: RNNConfig, lengths: list[int], seeds: int, cells: list[str], out: str | Path,
          *, progress: bool | None = None, checkpoint_every: int | None = None, reuse: bool = False,
          resume: bool = False) -> dict:
    """Train every (cell, T, seed); write <out>/rnn-sweep/sweep.json and accuracy-vs-T figures.

    The seeds of one (cell, T) train side by side in one compiled program (see
    :func:`train_seeds_together`), split over the local devices (shard_map); with several
    processes they train one after the other, each data parallel.
    With ``reuse``, a run already finished with the same settings is read back instead of retrained.
    With ``reuse`` or ``resume``, the seeds of a (cell, T) that all have a checkpoint with the same
    settings (an interrupted sweep) continue from it; the others start over.
    """
    if not lengths or any(t <= 0 for t in lengths):
        raise UsageError(f"--lengths must be positive integers, got {lengths}")
    if seeds <= 0:
        raise UsageError(f"--seeds must be positive, got {seeds}")
    for c in cells:
        if c not in CELLS:
            raise UsageError(f"--cells must be drawn from {', '.join(CELLS)}, got {c!r}")
    out = Path(out)
    sweep_dir = prepare_run_dir(out, cfg.sweep_name, "")
    select_devices(cfg.devices, cfg.batch_size)  # a bad --devices fails before anything trains
    together = seeds > 1 and vmap_supported()
    if seeds > 1 and not together:
        print("note: rnn-sweep trains the seeds one after the other: seeds share one program only in a single "
              "process", file=sys.stderr)
    results = []
    for cell in cells:
        for t in lengths:
            cfgs = [dataclasses.replace(cfg, input_length=t, cell=cell, seed=cfg.seed + s) for s in range(seeds)]
            results += train_group(cfgs, out / EXPERIMENT, together=together, reuse=reuse, resume=resume,
                                   progress=progress, checkpoint_every=checkpoint_every)
    table = tabulate(results, cells, lengths)
    doc = {"config": run_config(cfg), "lengths": lengths, "seeds": seeds, "cells": cells,
           "summary": table, "runs": results}
    atomic_write_json(sweep_dir / "sweep.json", doc)
    write_figures(cfg, doc, out / EXPERIMENT, sweep_dir)
    for cell, rows in table.items():
        print(f"rnn-sweep [{cell}] " + ", ".join(f"T={r['input_length']}: {r['mean']:.3f}±{r['std']:.3f}" for r in rows))
    release_run_dir(sweep_dir)
    return doc


def train_group(cfgs: list[RNNConfig], workdir: Path, *, together: bool, reuse: bool, resume: bool,
                **loop_kw) -> list[dict]:
    """The seeds of one (cell, T): read back, continued or trained; one result row each."""
    def train(todo: list[int], cont: bool) -> list[dict]:
        if together and len(todo) > 1:
            return train_seeds_together([cfgs[i] for i in todo], workdir, resume=cont, **loop_kw)
        return [train_and_evaluate(cfgs[i], workdir, resume=cont, **loop_kw) for i in todo]

    summaries = reuse_resume_or_train([workdir / c.run_name for c in cfgs], [run_config(c) for c in cfgs], train,
                                      reuse=reuse, resume=reuse or resume)
    rows = []
    for c, s in zip(cfgs, summaries):
        # Runs finished before summaries carried their gradient norms: grad_norms.json beside them.
        g = s.get("grad_norms") or json.loads((workdir / c.run_name / "grad_norms.json").read_text())
        rows.append({"cell": c.cell, "input_length": c.input_length, "seed": c.seed,
                     "test_accuracy": s["final"]["test_accuracy"], "train_accuracy": s["final"]["train_accuracy"],
                     "best_test_accuracy": s["best_test_accuracy"], "wall_time_s": s["wall_time_s"],
                     "trained_together": s.get("trained_together", 1), "grad_norms": g})
    return rows


def tabulate(results: list[dict], cells: list[str], lengths: list[int]) -> dict:
    """{cell: [{input_length, mean, std, min, max, n} of the final test accuracy over seeds, per length]}."""
    table = {}
    for cell in cells:
        for t in lengths:
            accs = [r["test_accuracy"] for r in results if r["cell"] == cell and r["input_length"] == t]
            table.setdefault(cell, []).append({"input_length": t, "mean": float(np.mean(accs)),
                                               "std": float(np.std(accs)), "min": float(np.min(accs)),
                                               "max": float(np.max(accs)), "n": len(accs)})
    return table


def write_figures(cfg: RNNConfig, doc: dict, workdir: Path, sweep_dir: Path) -> None:
    """Accuracy against T; per (cell, T) every seed's curves (the original's Appendix B); gradient norms."""
    plots.plot_sweep(doc["summary"], sweep_dir / "accuracy_vs_length.png")
    lengths, seeds = doc["lengths"], doc["seeds"]
    for cell in doc["cells"] if is_writer() else ():
        for t in lengths:
            names = [dataclasses.replace(cfg, input_length=t, cell=cell, seed=cfg.seed + s).run_name
                     for s in range(seeds)]
            plots.plot_curves({n: read_jsonl(workdir / n / "metrics.jsonl") for n in names},
                              sweep_dir / f"T{t}-{cell}-curves.png", xlabel="epoch",
                              title=f"palindrome T={t} ({cell}), {seeds} seed(s)")
    short, long = min(lengths), max(lengths)
    curves = {}
    for r in doc["runs"]:
        if r["seed"] == cfg.seed and r["input_length"] in (short, long):
            for when in ("init", "trained"):
                curves[f"{r['cell']} T={r['input_length']} {when}"] = r["grad_norms"][when]
    plots.plot_grad_norms(curves, sweep_dir / "grad_norms_short_vs_long.png",
                    title="gradient norm reaching h_t: short vs long sequences")


@dataclasses.dataclass
class SweepConfig(RNNConfig):
    """rnn-palindrome's settings for every run, plus what the sweep varies (input_length and cell are its)."""

    lengths: str = setting("5,10,15,20,25,30", "comma-separated sequence lengths T")
    seeds: int = setting(1, "seeds per length: seed, seed+1, ...")
    cells: str = setting("vanilla", "comma-separated cells: vanilla, lstm")

    def validate(self) -> None:
        super().validate()
        self.parsed()

    def parsed(self) -> tuple[RNNConfig, list[int], int, list[str]]:
        """(the runs' base config, lengths, seeds, cells); a malformed --lengths is a UsageError."""
        try:
            lengths = [int(v) for v in self.lengths.split(",") if v.strip()]
        except ValueError:
            raise UsageError(f"--lengths: expected comma-separated integers, got {self.lengths!r}") from None
        base = {f.name: getattr(self, f.name) for f in dataclasses.fields(RNNConfig)}
        return RNNConfig(**base), lengths, self.seeds, [c.strip() for c in self.cells.split(",") if c.strip()]


def main(cfg: SweepConfig, out: Path, *, resume: bool = False, **loop_kw) -> dict:
    # --resume: finished runs are read back, interrupted groups continue from their checkpoints.
    base, lengths, seeds, cells = cfg.parsed()
    return sweep(base, lengths, seeds, cells, out, reuse=resume, resume=resume, **loop_kw)


SPEC = Experiment(
    "rnn-sweep", "Part 3: test accuracy against sequence length, over seeds",
    "Trains rnn-palindrome for every length, seed and cell; writes <out>/rnn-sweep/sweep.json and "
    "accuracy-vs-length and gradient-norm figures.",
    SweepConfig, lambda: SweepConfig(**dataclasses.asdict(quick())), main, fixed=("input_length", "cell", "framework"))
