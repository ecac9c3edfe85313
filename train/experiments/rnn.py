"""Part 3: the palindrome task with a vanilla RNN (or an LSTM), and the sequence-length sweep.

Each run also measures why long sequences fail: the norm of dL/dh_t for every
time step t, at initialisation and after training (the vanishing gradient).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx

from data.palindrome import make_palindrome_data
from jax_models.rnn import RNNClassifier
from train.analysis import plots
from train.backends import base
from train.backends.jax_backend import model_compiler_options, optax_optimizer
from train.engine.schedule import LazyPeriods, epoch_batches
from train.engine.driver import Run, drive
from train.experiments.common import (BATCH_HELP, Experiment, PrecisionSetting, devices_setting, epochs_setting,
                                      parallel_path, parallel_setting,
                                      eval_splits, eval_train_setting, framework_help, precision_setting,
                                      require_common, require_positive, seed_setting, setting, several,
                                      train_each_framework)
from train.backends.jax_multiseed import MultiSeedJaxBackend, vmap_supported
from train.engine.results import atomic_write_json
from train.experiments.seeds import run_seeds
from train.errors import UsageError
from train.backends.jax_trainer import select_devices

EXPERIMENT = "rnn-palindrome"
CELLS = ("vanilla", "lstm")
ORDER = ("jax", "torch")  # --framework all: JAX first, then the others
NO_NUMPY = {"numpy": "the NumPy baseline has no recurrent model"}


@dataclass
class RNNConfig(PrecisionSetting):
    input_length: int = setting(19, "T: number of input digits (the palindrome has T+1 digits; the label is the last)")
    cell: str = setting("vanilla", "recurrent cell: vanilla (the original's tanh RNN) or lstm")
    framework: str = setting("jax", framework_help("; numpy has no RNN"))
    hidden: int = setting(128, "hidden state size")
    data_size: int = setting(100_000, "distinct palindromes drawn (capped at the 10^ceil((T+1)/2) that exist)")
    portion_train: float = setting(0.8, "fraction of the data used for training")
    epochs: int = epochs_setting(30)
    batch_size: int = setting(128, BATCH_HELP)
    lr: float = setting(1e-3, "learning rate")
    lr_step: int = setting(10, "StepLR: decay the learning rate every this many epochs (unspecified by the original)")
    lr_gamma: float = setting(0.1, "StepLR: multiply the learning rate by this factor (unspecified by the "
                                   "original; 1 = constant)")
    clip_norm: float = setting(10.0, "clip gradients to this global norm")
    precision: str = precision_setting()
    eval_train: bool = eval_train_setting()
    eval_batch: int = setting(4096, "batch size of the evaluation passes")
    grad_probe: int = setting(512, "test sequences used to measure the gradient norm reaching each h_t")
    seed: int = seed_setting()
    devices: int = devices_setting()
    parallel: str = parallel_setting()

    @property
    def run_name(self) -> str:
        fw = "" if self.framework == "jax" or several(self.framework) else f"-{self.framework}"
        return f"T{self.input_length}-{self.cell}-{self.resolved_precision.name}{self.schedule_tag}{fw}-s{self.seed}"

    @property
    def schedule_tag(self) -> str:
        """'' for the default StepLR factor; '-lrgamma1' (constant rate) etc. otherwise, so ablations get their own folders."""
        return "" if self.lr_gamma == 0.1 else f"-lrgamma{self.lr_gamma:g}"

    @property
    def sweep_name(self) -> str:
        """The folder of a sweep with these settings: rnn-sweep, or rnn-sweep-lrgamma1 for the constant-rate ablation."""
        return f"rnn-sweep{self.schedule_tag}"

    def validate(self) -> None:
        frameworks(self)
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


def frameworks(cfg: RNNConfig) -> base.Chosen:
    """The frameworks ``cfg.framework`` names (``.missing``: those ``all`` left out as not installed)."""
    return base.choose(cfg.framework, ORDER, NO_NUMPY)


def optimizer(cfg: RNNConfig) -> base.Optimizer:
    """PyTorch's RMSprop (alpha 0.99, eps 1e-8 outside the sqrt) with StepLR, after PyTorch's global-norm clipping."""
    return base.Optimizer("rmsprop", cfg.lr, clip_norm=cfg.clip_norm, lr_step=cfg.lr_step, lr_gamma=cfg.lr_gamma)


def make_optimizer(cfg: RNNConfig, steps_per_epoch: int):
    return optax_optimizer(optimizer(cfg), steps_per_epoch)


# Evaluation keeps every hidden state of a chunk, [chunk, T, hidden]: bound it, so memory does not grow with T.
EVAL_ELEMENTS = 2**24


def eval_chunk(cfg: RNNConfig) -> int:
    """The evaluation batch: --eval-batch, made smaller for long sequences (64 MiB of fp32 states at most)."""
    return max(1, min(cfg.eval_batch, EVAL_ELEMENTS // (cfg.input_length * cfg.hidden)))


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

        return epoch_batches(self.n_train, self.cfg.batch_size, e, self.cfg.seed)

    def probe(self):
        """The test sequences on which dL/dh_t is measured."""
        return self.arrays["test_x"][: self.cfg.grad_probe], self.arrays["test_y"][: self.cfg.grad_probe]

    def model(self):
        return build_model(self.cfg)


def build_model(cfg: RNNConfig):
    """The recurrent classifier for ``cfg`` (vanilla or LSTM cell), initialised from ``cfg.seed``."""
    return RNNClassifier(input_dim=10, hidden=cfg.hidden, num_classes=10, cell=cfg.cell,
                         dtype=getattr(jnp, cfg.resolved_precision.compute_dtype), rngs=nnx.Rngs(cfg.seed))


def recipe(cfg: RNNConfig, steps_per_epoch: int) -> base.Recipe:
    return base.Recipe(optimizer(cfg), cfg.seed, cfg.resolved_precision, eval_splits=eval_splits(cfg),
                       eval_batch=eval_chunk(cfg), steps_per_epoch=steps_per_epoch,
                       devices=(devs := select_devices(cfg.devices, cfg.batch_size)),
                       parallel=parallel_path(cfg, devs))


def make_backend(cfg: RNNConfig, framework: str, data: _Data):
    """The ``framework`` backend of this run: the JAX model built from ``cfg.seed``, and for another
    framework its weights converted."""
    return base.from_jax(framework, data.model(), recipe(cfg, data.steps_per_epoch), data.arrays)


def _load(cfg: RNNConfig) -> _Data:
    cfg.validate()
    ds = make_palindrome_data(cfg.input_length, cfg.data_size, cfg.portion_train, seed=cfg.seed)
    n = len(ds.train_y)
    if n < cfg.batch_size:
        raise UsageError(f"--batch-size {cfg.batch_size} is larger than the {n} training sequences "
                         f"(only {len(ds.train_y) + len(ds.test_y)} palindromes of length {cfg.input_length + 1} exist)")
    return _Data(cfg, {"train_x": ds.train_x, "train_y": ds.train_y, "test_x": ds.test_x, "test_y": ds.test_y})


def _runs(data: list[_Data], workdir: Path, framework: str = "jax") -> tuple[list, dict]:
    """(runs, grads): each run measures dL/dh_t once trained; ``grads[seed]`` awaits the initial one."""

    grads: dict = {}

    def after(d: _Data, k: int):
        def write(run_dir: Path, log, summary: dict, backend) -> None:
            cfg = d.cfg
            trained = backend.grad_norms(*d.probe(), run=k)
            init = grads[cfg.seed]
            atomic_write_json(run_dir / "grad_norms.json", {"t": list(range(1, cfg.input_length + 1)),
                                                            "init": init, "trained": trained})
            plots.plot_grad_norms({"at initialisation": init, "after training": trained}, run_dir / "grad_norms.png",
                            title=f"T={cfg.input_length} {cfg.cell}: gradient reaching h_t")
            summary["grad_norm_ratio_first_to_last_trained"] = trained[0] / trained[-1]
            summary["grad_norms"] = {"init": init, "trained": trained}
            plots.plot_curves({cfg.run_name: log.rows}, run_dir / "curves.png",
                              title=f"palindrome T={cfg.input_length} ({cfg.cell})", xlabel="epoch")
        return write

    runs = [Run(EXPERIMENT, d.cfg, workdir, d.cfg.run_name, framework=framework,
                record={"n_train": d.n_train, "n_test": len(d.arrays["test_y"])},
                summary={"input_length": d.cfg.input_length, "cell": d.cfg.cell, "seed": d.cfg.seed,
                         "precision": d.cfg.resolved_precision.name, "epochs": d.cfg.epochs,
                         # seeds trained side by side share one program and its wall time
                         "trained_together": len(data)},
                after=after(d, k)) for k, d in enumerate(data)]
    return runs, grads


def _measure_init(data: list[_Data], grads: dict):
    """``before`` hook: every run's dL/dh_t at initialisation."""
    def measure(backend):
        for k, d in enumerate(data):
            grads[d.cfg.seed] = backend.grad_norms(*d.probe(), run=k)
    return measure


def train_and_evaluate(cfg: RNNConfig, workdir: str | Path, *, progress: bool | None = None,
                       resume: bool = False, checkpoint_every: int | None = None) -> dict:
    """One run in ``cfg.framework``: from the JAX model's initial weights, RMSprop + StepLR + clipping."""
    cfg.validate()
    select_devices(cfg.devices, cfg.batch_size)  # a bad --devices fails before the data is made
    d = _load(cfg)
    runs, grads = _runs([d], Path(workdir), framework=cfg.framework)
    schedule = LazyPeriods(d.epoch, cfg.epochs, d.steps_per_epoch)
    return drive(runs, lambda: make_backend(cfg, cfg.framework, d), [schedule], resume=resume,
                 checkpoint_every=checkpoint_every, progress=progress, before=_measure_init([d], grads),
                 desc=f"{EXPERIMENT} {cfg.run_name}")[0]


def train_seeds_together(cfgs: list[RNNConfig], workdir: str | Path, *, progress: bool | None = None,
                         resume: bool = False, checkpoint_every: int | None = None) -> list[dict]:
    """Train ``cfgs`` (differing only in ``seed``) in one vmapped program; each folder is as its
    single run writes it, and every seed reports the shared program's timing."""

    if len(cfgs) == 1:
        return [train_and_evaluate(cfgs[0], workdir, progress=progress, resume=resume,
                                   checkpoint_every=checkpoint_every)]
    for c in cfgs:
        c.validate()
    if len({json.dumps({**dataclasses.asdict(c), "seed": 0}, sort_keys=True) for c in cfgs}) != 1:
        raise ValueError("train_seeds_together: the configs may differ only in their seed")
    devices = select_devices(cfgs[0].devices, cfgs[0].batch_size)
    if not vmap_supported() or cfgs[0].framework != "jax":
        raise ValueError("train_seeds_together runs JAX in one process")
    data = [_load(c) for c in cfgs]
    cfg = cfgs[0]

    def make_seeds_backend():
        return MultiSeedJaxBackend([d.model() for d in data], make_optimizer(cfg, data[0].steps_per_epoch),
                                   lambda x: x, [d.arrays for d in data], seeds=[c.seed for c in cfgs],
                                   devices=devices, eval_batch=eval_chunk(cfg), eval_splits=eval_splits(cfg),
                                   precision=cfg.resolved_precision,
                                   compiler_options=model_compiler_options(RNNClassifier, devices) or None)

    runs, grads = _runs(data, Path(workdir))
    schedules = [LazyPeriods(d.epoch, cfg.epochs, d.steps_per_epoch) for d in data]
    seeds = ",".join(str(c.seed) for c in cfgs)
    return drive(runs, make_seeds_backend, schedules, resume=resume, checkpoint_every=checkpoint_every,
                 progress=progress, before=_measure_init(data, grads),
                 desc=f"{EXPERIMENT} T{cfg.input_length}-{cfg.cell}-s{{{seeds}}}")


def main(cfg: RNNConfig, out: Path, **loop_kw) -> dict:
    workdir = Path(out) / EXPERIMENT
    if not several(cfg.framework):
        return train_and_evaluate(cfg, workdir, **loop_kw)
    return train_each_framework(cfg, frameworks(cfg), lambda c: train_and_evaluate(c, workdir, **loop_kw), workdir)


def main_seeds(cfg: RNNConfig, out: Path, seeds: int, *, resume: bool = False, **loop_kw):
    """``--seeds K``: seeds cfg.seed .. cfg.seed + K - 1 of every framework (see train/experiments/seeds.py)."""
    workdir = Path(out) / EXPERIMENT
    return run_seeds(cfg, seeds, frameworks(cfg), workdir, name=EXPERIMENT, resume=resume,
                     alone=lambda cs, fw, cont: [train_and_evaluate(cs[0], workdir, resume=cont, **loop_kw)],
                     together=lambda cs, fw, cont: train_seeds_together(cs, workdir, resume=cont, **loop_kw),
                     compare_name=f"{cfg.run_name}-seeds{seeds}-compare")


SPEC = Experiment(
    EXPERIMENT, "Part 3: vanilla RNN (or LSTM) on the palindrome task",
    "Part 3: predict the last digit of a (T+1)-digit palindrome from its first T digits. "
    "Defaults are the original's: RMSprop lr 1e-3, StepLR, clip 10, batch 128, 30 epochs.",
    RNNConfig, quick, main, main_seeds=main_seeds)
