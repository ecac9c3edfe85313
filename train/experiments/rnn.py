"""Part 3: the palindrome task with a vanilla RNN (or an LSTM), and the sequence-length sweep.

Each run also measures why long sequences fail: the norm of dL/dh_t for every
time step t, at initialisation and after training (the vanishing gradient).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from train import plots
from train.experiments.common import compute_dtype, eval_splits, require_common, require_positive, resolve_precision
from train.results import (UsageError, atomic_write_json, make_summary, one_line,
                           prepare_run_dir, save_figure)

EXPERIMENT = "rnn-palindrome"
CELLS = ("vanilla", "lstm")


@dataclass
class RNNConfig:
    input_length: int = 19
    cell: str = "vanilla"          # vanilla | lstm
    hidden: int = 128
    data_size: int = 100_000
    portion_train: float = 0.8
    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3
    lr_step: int = 10              # StepLR step size in epochs (unspecified by the original)
    lr_gamma: float = 0.1          # StepLR factor (unspecified by the original)
    clip_norm: float = 10.0
    precision: str = "fp32"        # fp32 | bf16 | auto
    eval_train: bool = False       # False: train metrics = mean over the epoch's steps (the original's)
    eval_batch: int = 4096
    grad_probe: int = 512          # test sequences used to measure dL/dh_t
    seed: int = 0
    devices: int = 0               # 0: all local devices; 1: plain single-device jit

    @property
    def run_name(self) -> str:
        return f"T{self.input_length}-{self.cell}-s{self.seed}"

    def precision_resolved(self) -> str:
        return resolve_precision(self.precision)

    def validate(self) -> None:
        if self.cell not in CELLS:
            raise UsageError(f"--cell must be one of {', '.join(CELLS)}, got {self.cell!r}")
        require_positive(self, "input_length", "hidden", "epochs", "batch_size", "lr_step", "eval_batch")
        if self.data_size < 2:
            raise UsageError(f"--data-size must be at least 2, got {self.data_size}")
        if not 0 < self.portion_train < 1:
            raise UsageError(f"--portion-train must be in (0, 1), got {self.portion_train}")
        if not self.lr > 0 or not 0 < self.lr_gamma <= 1 or not self.clip_norm > 0:
            raise UsageError("--lr and --clip-norm must be positive and --lr-gamma in (0, 1]")
        require_common(self)


def quick() -> RNNConfig:
    return RNNConfig(input_length=5, epochs=3, data_size=1000, batch_size=64)


def make_optimizer(cfg: RNNConfig, steps_per_epoch: int):
    """PyTorch's RMSprop (alpha 0.99, eps 1e-8 outside the sqrt) with StepLR, after global-norm clipping."""
    import optax

    schedule = optax.exponential_decay(cfg.lr, transition_steps=cfg.lr_step * steps_per_epoch,
                                       decay_rate=cfg.lr_gamma, staircase=True)
    return optax.chain(optax.clip_by_global_norm(cfg.clip_norm),
                       optax.rmsprop(schedule, decay=0.99, eps=1e-8, eps_in_sqrt=False))


def _grad_norms(graphdef, host_state, x, y) -> list[float]:
    from flax import nnx

    from jax_models.rnn import grad_norms_wrt_hidden

    model = nnx.merge(graphdef, host_state.params, host_state.model_state)
    return [float(v) for v in np.asarray(grad_norms_wrt_hidden(model, x, y))]


def plot_grad_norms(curves: dict[str, list[float]], path, *, title: str) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for label, g in curves.items():
        ax.semilogy(np.arange(1, len(g) + 1), g, marker=".", label=label)
    ax.set_xlabel("time step t")
    ax.set_ylabel("mean ||dL/dh_t||")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title(title)
    save_figure(fig, path)
    plt.close(fig)


def train_and_evaluate(cfg: RNNConfig, workdir: str | Path, *, progress: bool | None = None,
                       resume: bool = False, checkpoint_every: int = 1) -> dict:
    from flax import nnx

    from data.palindrome import make_palindrome_data
    from jax_models.rnn import RNNClassifier
    from train.backends import JaxBackend, epoch_batches
    from train.loop import check_resumable, train_loop
    from train.trainer import select_devices
    from train.results import device_info, package_versions

    cfg.validate()
    devices = select_devices(cfg.devices, cfg.batch_size)
    ds = make_palindrome_data(cfg.input_length, cfg.data_size, cfg.portion_train, seed=cfg.seed)
    n = len(ds.train_y)
    if n < cfg.batch_size:
        raise UsageError(f"--batch-size {cfg.batch_size} is larger than the {n} training sequences "
                         f"(only {len(ds.train_y) + len(ds.test_y)} palindromes of length {cfg.input_length + 1} exist)")
    arrays = {"train_x": ds.train_x, "train_y": ds.train_y, "test_x": ds.test_x, "test_y": ds.test_y}
    workdir = Path(workdir)
    if resume:
        check_resumable(workdir / cfg.run_name, json.loads(json.dumps(dataclasses.asdict(cfg))))
    run_dir = prepare_run_dir(workdir.parent, workdir.name, cfg.run_name)
    dtype = compute_dtype(cfg.precision)
    model = RNNClassifier(input_dim=10, hidden=cfg.hidden, num_classes=10, cell=cfg.cell, dtype=dtype,
                          rngs=nnx.Rngs(cfg.seed))
    steps_per_epoch = n // cfg.batch_size
    backend = JaxBackend(model, make_optimizer(cfg, steps_per_epoch), lambda x: x, arrays, seed=cfg.seed,
                         devices=devices, eval_batch=cfg.eval_batch, eval_splits=eval_splits(cfg))
    atomic_write_json(run_dir / "config.json", {
        "experiment": EXPERIMENT, "framework": "jax", "config": dataclasses.asdict(cfg),
        "n_train": n, "n_test": len(ds.test_y), "versions": package_versions(), "devices": device_info()})
    probe_x, probe_y = ds.test_x[: cfg.grad_probe], ds.test_y[: cfg.grad_probe]
    grads_init = _grad_norms(backend.graphdef, backend.host_state(), probe_x, probe_y)
    schedule = [epoch_batches(n, cfg.batch_size, e, cfg.seed) for e in range(cfg.epochs)]
    log, timing = train_loop(backend, schedule, run_dir, resume=resume, checkpoint_every=checkpoint_every,
                             epochs=True, desc=f"{EXPERIMENT} {cfg.run_name}", progress=progress)
    grads_trained = _grad_norms(backend.graphdef, backend.host_state(), probe_x, probe_y)
    atomic_write_json(run_dir / "grad_norms.json", {"t": list(range(1, cfg.input_length + 1)),
                                                    "init": grads_init, "trained": grads_trained})
    plot_grad_norms({"at initialisation": grads_init, "after training": grads_trained}, run_dir / "grad_norms.png",
                    title=f"T={cfg.input_length} {cfg.cell}: gradient reaching h_t")
    summary = make_summary(EXPERIMENT, "jax", log.rows, timing,
                           param_count=backend.param_count, devices=backend.devices,
                           extra={"input_length": cfg.input_length, "cell": cfg.cell, "seed": cfg.seed,
                                  "precision": cfg.precision_resolved(), "epochs": cfg.epochs,
                                  "grad_norm_ratio_first_to_last_trained": grads_trained[0] / grads_trained[-1]})
    plots.plot_curves({cfg.run_name: log.rows}, run_dir / "curves.png",
                      title=f"palindrome T={cfg.input_length} ({cfg.cell})", xlabel="epoch")
    atomic_write_json(run_dir / "summary.json", summary)
    print(one_line(summary))
    return summary


def sweep(cfg: RNNConfig, lengths: list[int], seeds: int, cells: list[str], out: str | Path,
          *, progress: bool | None = None, checkpoint_every: int = 1, reuse: bool = False) -> dict:
    """Train every (cell, T, seed); write <out>/rnn-sweep/sweep.json and accuracy-vs-T figures.

    With ``reuse``, a run already finished with the same settings is read back instead of retrained.
    """
    from train.loop import completed_summary

    if not lengths or any(t <= 0 for t in lengths):
        raise UsageError(f"--lengths must be positive integers, got {lengths}")
    if seeds <= 0:
        raise UsageError(f"--seeds must be positive, got {seeds}")
    for c in cells:
        if c not in CELLS:
            raise UsageError(f"--cells must be drawn from {', '.join(CELLS)}, got {c!r}")
    out = Path(out)
    sweep_dir = prepare_run_dir(out, "rnn-sweep", "")
    results = []
    for cell in cells:
        for t in lengths:
            for s in range(seeds):
                run_cfg = dataclasses.replace(cfg, input_length=t, cell=cell, seed=cfg.seed + s)
                summ = completed_summary(out / EXPERIMENT / run_cfg.run_name, dataclasses.asdict(run_cfg)) if reuse else None
                if summ is None:
                    summ = train_and_evaluate(run_cfg, out / EXPERIMENT, progress=progress,
                                              checkpoint_every=checkpoint_every)
                g = json.loads((out / EXPERIMENT / run_cfg.run_name / "grad_norms.json").read_text())
                results.append({"cell": cell, "input_length": t, "seed": run_cfg.seed,
                                "test_accuracy": summ["final"]["test_accuracy"],
                                "train_accuracy": summ["final"]["train_accuracy"],
                                "best_test_accuracy": summ["best_test_accuracy"],
                                "wall_time_s": summ["wall_time_s"], "grad_norms": g})
    table = {}
    for cell in cells:
        for t in lengths:
            accs = [r["test_accuracy"] for r in results if r["cell"] == cell and r["input_length"] == t]
            table.setdefault(cell, []).append({"input_length": t, "mean": float(np.mean(accs)), "std": float(np.std(accs)),
                                               "min": float(np.min(accs)), "max": float(np.max(accs)), "n": len(accs)})
    doc = {"config": dataclasses.asdict(cfg), "lengths": lengths, "seeds": seeds, "cells": cells,
           "summary": table, "runs": results}
    atomic_write_json(sweep_dir / "sweep.json", doc)
    plot_sweep(table, sweep_dir / "accuracy_vs_length.png")
    short, long = min(lengths), max(lengths)
    curves = {}
    for r in results:
        if r["seed"] == cfg.seed and r["input_length"] in (short, long):
            for when in ("init", "trained"):
                curves[f"{r['cell']} T={r['input_length']} {when}"] = r["grad_norms"][when]
    plot_grad_norms(curves, sweep_dir / "grad_norms_short_vs_long.png",
                    title="gradient norm reaching h_t: short vs long sequences")
    for cell, rows in table.items():
        print(f"rnn-sweep [{cell}] " + ", ".join(f"T={r['input_length']}: {r['mean']:.3f}±{r['std']:.3f}" for r in rows))
    return doc


def plot_sweep(table: dict, path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, (cell, rows) in enumerate(table.items()):
        t = [r["input_length"] for r in rows]
        m = np.array([r["mean"] for r in rows])
        ax.plot(t, m, marker="o", color=f"C{i}", label=f"{cell} (mean)")
        ax.fill_between(t, [r["min"] for r in rows], [r["max"] for r in rows], color=f"C{i}", alpha=0.2,
                        label=f"{cell} (min-max over seeds)")
    ax.axhline(0.1, color="gray", ls=":", label="chance")
    ax.set_xlabel("sequence length T")
    ax.set_ylabel("final test accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("palindrome accuracy vs sequence length")
    save_figure(fig, path)
    plt.close(fig)
