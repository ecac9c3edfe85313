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
from train.experiments.common import (compute_dtype, eval_splits, require_common, require_positive,
                                     resolve_precision, under_precision)
from train.results import (UsageError, atomic_write_json, is_writer, prepare_run_dir, read_jsonl, release_run_dir,
                           save_figure)

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
    precision: str = "fp32"        # fp32 | tf32 | bf16 | auto
    eval_train: bool = False       # False: train metrics = mean over the epoch's steps (the original's)
    eval_batch: int = 4096
    grad_probe: int = 512          # test sequences used to measure dL/dh_t
    seed: int = 0
    devices: int = 0               # 0: all local devices; 1: plain single-device jit

    @property
    def run_name(self) -> str:
        return f"T{self.input_length}-{self.cell}-{self.precision_resolved()}{self.schedule_tag}-s{self.seed}"

    @property
    def schedule_tag(self) -> str:
        """'' for the default StepLR factor; '-lrgamma1' (constant rate) etc. otherwise, so ablations get their own folders."""
        return "" if self.lr_gamma == RNNConfig.lr_gamma else f"-lrgamma{self.lr_gamma:g}"

    @property
    def sweep_name(self) -> str:
        """The folder of a sweep with these settings: rnn-sweep, or rnn-sweep-lrgamma1 for the constant-rate ablation."""
        return f"rnn-sweep{self.schedule_tag}"

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


def clip_grad_norm(max_norm: float):
    """PyTorch's ``clip_grad_norm_`` as an optax transformation: ``g * min(1, max_norm / (||g|| + 1e-6))``.

    One scalar factor per step multiplies every gradient (optax's ``clip_by_global_norm``
    divides by the norm instead). Besides following the original, this keeps seeds trained
    side by side bit-identical to seeds trained alone: under ``jax.vmap`` the norm is a
    per-seed vector, and XLA rewrites ``g / broadcast(norm)`` into ``g * broadcast(1 / norm)``
    there but not for a scalar norm, which differs in the last bit whenever clipping acts.
    """
    import jax
    import jax.numpy as jnp
    import optax

    def update(updates, state, params=None):
        norm = optax.tree.norm(updates)
        scale = jnp.minimum(1.0, max_norm / (norm + 1e-6))
        return jax.tree.map(lambda g: g * scale.astype(g.dtype), updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def make_optimizer(cfg: RNNConfig, steps_per_epoch: int):
    """PyTorch's RMSprop (alpha 0.99, eps 1e-8 outside the sqrt) with StepLR, after PyTorch's global-norm clipping."""
    import optax

    schedule = optax.exponential_decay(cfg.lr, transition_steps=cfg.lr_step * steps_per_epoch,
                                       decay_rate=cfg.lr_gamma, staircase=True)
    return optax.chain(clip_grad_norm(cfg.clip_norm),
                       optax.rmsprop(schedule, decay=0.99, eps=1e-8, eps_in_sqrt=False))


# Evaluation keeps every hidden state of a chunk, [chunk, T, hidden]: bound it, so memory does not grow with T.
EVAL_ELEMENTS = 2**24


def eval_chunk(cfg: RNNConfig) -> int:
    """The evaluation batch: --eval-batch, made smaller for long sequences (64 MiB of fp32 states at most)."""
    return max(1, min(cfg.eval_batch, EVAL_ELEMENTS // (cfg.input_length * cfg.hidden)))


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


@dataclass
class _Data:
    """One seed's palindromes, prepared the same way whether it trains alone or beside other seeds."""

    cfg: RNNConfig
    arrays: dict

    @property
    def n_train(self) -> int:
        return len(self.arrays["train_y"])

    @property
    def steps_per_epoch(self) -> int:
        return self.n_train // self.cfg.batch_size

    def epoch(self, e: int) -> np.ndarray:
        from train.backends import epoch_batches

        return epoch_batches(self.n_train, self.cfg.batch_size, e, self.cfg.seed)

    def probe(self):
        """The test sequences on which dL/dh_t is measured."""
        return self.arrays["test_x"][: self.cfg.grad_probe], self.arrays["test_y"][: self.cfg.grad_probe]

    def model(self):
        from flax import nnx

        from jax_models.rnn import RNNClassifier

        return RNNClassifier(input_dim=10, hidden=self.cfg.hidden, num_classes=10, cell=self.cfg.cell,
                             dtype=compute_dtype(self.cfg.precision), rngs=nnx.Rngs(self.cfg.seed))


def _load(cfg: RNNConfig) -> _Data:
    from data.palindrome import make_palindrome_data

    cfg.validate()
    ds = make_palindrome_data(cfg.input_length, cfg.data_size, cfg.portion_train, seed=cfg.seed)
    n = len(ds.train_y)
    if n < cfg.batch_size:
        raise UsageError(f"--batch-size {cfg.batch_size} is larger than the {n} training sequences "
                         f"(only {len(ds.train_y) + len(ds.test_y)} palindromes of length {cfg.input_length + 1} exist)")
    return _Data(cfg, {"train_x": ds.train_x, "train_y": ds.train_y, "test_x": ds.test_x, "test_y": ds.test_y})


def _runs(data: list[_Data], workdir: Path, states) -> tuple[list, dict]:
    """The driver's runs for these seeds; ``states()`` gives the trained host states (one per seed) at the end.

    Returns (runs, grads): ``grads[seed]`` is filled with dL/dh_t at initialisation by ``measure_init``.
    """
    from train.driver import Run

    grads: dict = {}

    def after(d: _Data, k: int):
        def write(run_dir: Path, log, summary: dict) -> None:
            cfg = d.cfg
            graphdef, state = states(k)
            trained = _grad_norms(graphdef, state, *d.probe())
            init = grads[cfg.seed]
            atomic_write_json(run_dir / "grad_norms.json", {"t": list(range(1, cfg.input_length + 1)),
                                                            "init": init, "trained": trained})
            plot_grad_norms({"at initialisation": init, "after training": trained}, run_dir / "grad_norms.png",
                            title=f"T={cfg.input_length} {cfg.cell}: gradient reaching h_t")
            summary["grad_norm_ratio_first_to_last_trained"] = trained[0] / trained[-1]
            summary["grad_norms"] = {"init": init, "trained": trained}
            plots.plot_curves({cfg.run_name: log.rows}, run_dir / "curves.png",
                              title=f"palindrome T={cfg.input_length} ({cfg.cell})", xlabel="epoch")
        return write

    runs = [Run(EXPERIMENT, d.cfg, workdir, d.cfg.run_name,
                record={"n_train": d.n_train, "n_test": len(d.arrays["test_y"])},
                summary={"input_length": d.cfg.input_length, "cell": d.cfg.cell, "seed": d.cfg.seed,
                         "precision": d.cfg.precision_resolved(), "epochs": d.cfg.epochs,
                         # seeds trained side by side share one program and its wall time
                         "trained_together": len(data)},
                after=after(d, k)) for k, d in enumerate(data)]
    return runs, grads


@under_precision
def train_and_evaluate(cfg: RNNConfig, workdir: str | Path, *, progress: bool | None = None,
                       resume: bool = False, checkpoint_every: int | None = None) -> dict:
    from train.backends import JaxBackend, LazyPeriods
    from train.driver import drive
    from train.trainer import select_devices

    cfg.validate()
    devices = select_devices(cfg.devices, cfg.batch_size)
    d = _load(cfg)
    box = []

    def make_backend():
        box.append(JaxBackend(d.model(), make_optimizer(cfg, d.steps_per_epoch), lambda x: x, d.arrays,
                              seed=cfg.seed, devices=devices, eval_batch=eval_chunk(cfg), eval_splits=eval_splits(cfg)))
        return box[0]

    runs, grads = _runs([d], Path(workdir), lambda k: (box[0].graphdef, box[0].host_state()))

    def measure_init(backend):
        grads[cfg.seed] = _grad_norms(backend.graphdef, backend.host_state(), *d.probe())

    return drive(runs, make_backend, LazyPeriods(d.epoch, cfg.epochs, d.steps_per_epoch), resume=resume,
                 checkpoint_every=checkpoint_every, progress=progress, before=measure_init,
                 desc=f"{EXPERIMENT} {cfg.run_name}")[0]


@under_precision
def train_seeds_together(cfgs: list[RNNConfig], workdir: str | Path, *, progress: bool | None = None,
                         resume: bool = False, checkpoint_every: int | None = None) -> list[dict]:
    """Train several seeds of one setting side by side in one compiled program (``jax.vmap``, one device).

    ``cfgs`` differ only in ``seed``. Each seed's run folder is written as ``train_and_evaluate(cfg)``
    writes it alone (the same data, initialisation, batch order and files, a checkpoint folder that
    ``rnn-palindrome --resume`` can continue alone); the metrics agree with separate runs to float
    rounding. Timing fields are the shared program's: every seed reports the same train time.
    """
    from train.backends import LazyPeriods
    from train.driver import drive
    from train.multiseed import MultiSeedJaxBackend, vmap_supported
    from train.trainer import select_devices

    if len(cfgs) == 1:
        return [train_and_evaluate(cfgs[0], workdir, progress=progress, resume=resume,
                                   checkpoint_every=checkpoint_every)]
    for c in cfgs:
        c.validate()
    if len({json.dumps({**dataclasses.asdict(c), "seed": 0}, sort_keys=True) for c in cfgs}) != 1:
        raise ValueError("train_seeds_together: the configs may differ only in their seed")
    devices = select_devices(cfgs[0].devices, cfgs[0].batch_size)
    if not vmap_supported(devices):
        raise ValueError("train_seeds_together runs on one device in one process")
    data = [_load(c) for c in cfgs]
    cfg, box, final = cfgs[0], [], []

    def make_backend():
        box.append(MultiSeedJaxBackend([d.model() for d in data], make_optimizer(cfg, data[0].steps_per_epoch),
                                       lambda x: x, [d.arrays for d in data], seeds=[c.seed for c in cfgs],
                                       device=devices[0], eval_batch=eval_chunk(cfg), eval_splits=eval_splits(cfg)))
        return box[0]

    def states(k):
        if not final:
            final.extend(box[0].host_state())
        return box[0].graphdef, final[k]

    runs, grads = _runs(data, Path(workdir), states)

    def measure_init(backend):
        for d, st in zip(data, backend.host_state()):
            grads[d.cfg.seed] = _grad_norms(backend.graphdef, st, *d.probe())

    schedule = LazyPeriods(lambda e: np.stack([d.epoch(e) for d in data]), cfg.epochs, data[0].steps_per_epoch)
    seeds = ",".join(str(c.seed) for c in cfgs)
    return drive(runs, make_backend, schedule, resume=resume, checkpoint_every=checkpoint_every, progress=progress,
                 before=measure_init, desc=f"{EXPERIMENT} T{cfg.input_length}-{cfg.cell}-s{{{seeds}}}")


def _resumable(cfgs: list[RNNConfig], workdir: Path) -> bool:
    """True if every one of these runs has a checkpoint made with its exact settings."""
    from train.loop import check_resumable

    try:
        for c in cfgs:
            check_resumable(workdir / c.run_name, dataclasses.asdict(c))
    except UsageError:
        return False
    return True


def sweep(cfg: RNNConfig, lengths: list[int], seeds: int, cells: list[str], out: str | Path,
          *, progress: bool | None = None, checkpoint_every: int | None = None, reuse: bool = False,
          resume: bool = False) -> dict:
    """Train every (cell, T, seed); write <out>/rnn-sweep/sweep.json and accuracy-vs-T figures.

    The seeds of one (cell, T) train side by side in one compiled program (see
    :func:`train_seeds_together`) on a single device; with several devices or processes
    they train one after the other, each data parallel.
    With ``reuse``, a run already finished with the same settings is read back instead of retrained.
    With ``reuse`` or ``resume``, the seeds of a (cell, T) that all have a checkpoint with the same
    settings (an interrupted sweep) continue from it; the others start over.
    """
    import sys

    from train.loop import completed_summary
    from train.multiseed import vmap_supported
    from train.trainer import select_devices

    if not lengths or any(t <= 0 for t in lengths):
        raise UsageError(f"--lengths must be positive integers, got {lengths}")
    if seeds <= 0:
        raise UsageError(f"--seeds must be positive, got {seeds}")
    for c in cells:
        if c not in CELLS:
            raise UsageError(f"--cells must be drawn from {', '.join(CELLS)}, got {c!r}")
    out = Path(out)
    workdir = out / EXPERIMENT
    sweep_dir = prepare_run_dir(out, cfg.sweep_name, "")
    together = seeds > 1 and vmap_supported(select_devices(cfg.devices, cfg.batch_size))
    if seeds > 1 and not together:
        print("note: rnn-sweep trains the seeds one after the other: seeds share one program only on a single "
              "device in a single process (--devices 1)", file=sys.stderr)
    loop_kw = {"progress": progress, "checkpoint_every": checkpoint_every}
    results = []
    for cell in cells:
        for t in lengths:
            cfgs = [dataclasses.replace(cfg, input_length=t, cell=cell, seed=cfg.seed + s) for s in range(seeds)]
            summ = {c.seed: completed_summary(workdir / c.run_name, dataclasses.asdict(c)) if reuse else None
                    for c in cfgs}
            todo = [c for c in cfgs if summ[c.seed] is None]
            cont = bool(todo) and (reuse or resume) and _resumable(todo, workdir)
            if together and len(todo) > 1:
                summ.update(zip([c.seed for c in todo], train_seeds_together(todo, workdir, resume=cont, **loop_kw)))
            else:
                for c in todo:
                    summ[c.seed] = train_and_evaluate(c, workdir, resume=cont, **loop_kw)
            for c in cfgs:
                s = summ[c.seed]
                # Runs finished before summaries carried their gradient norms: grad_norms.json beside them.
                g = s.get("grad_norms") or json.loads((workdir / c.run_name / "grad_norms.json").read_text())
                results.append({"cell": cell, "input_length": t, "seed": c.seed,
                                "test_accuracy": s["final"]["test_accuracy"],
                                "train_accuracy": s["final"]["train_accuracy"],
                                "best_test_accuracy": s["best_test_accuracy"],
                                "wall_time_s": s["wall_time_s"], "trained_together": s.get("trained_together", 1),
                                "grad_norms": g})
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
    for cell in cells if is_writer() else ():
        for t in lengths:  # the original's Appendix B: one figure per length, every seed on it
            names = [dataclasses.replace(cfg, input_length=t, cell=cell, seed=cfg.seed + s).run_name
                     for s in range(seeds)]
            plots.plot_curves({n: read_jsonl(workdir / n / "metrics.jsonl") for n in names},
                              sweep_dir / f"T{t}-{cell}-curves.png", xlabel="epoch",
                              title=f"palindrome T={t} ({cell}), {seeds} seed(s)")
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
    release_run_dir(sweep_dir)
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
