"""Part 3: the palindrome task with a vanilla RNN (or an LSTM), and the sequence-length sweep.

Each run also measures why long sequences fail: the norm of dL/dh_t for every
time step t, at initialisation and after training (the vanishing gradient).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from data.palindrome import make_palindrome_data
from jax_models.rnn import RNNClassifier, grad_norms_wrt_hidden
from train.analysis import plots
from train.backends.jax_backend import JaxBackend
from train.engine.schedule import LazyPeriods, epoch_batches
from train.engine.driver import Run, drive
from train.experiments.common import (BATCH_HELP, Experiment, WithPrecision, compute_dtype, devices_setting,
                                      epochs_setting, eval_splits, eval_train_setting, precision_setting,
                                      require_common, require_positive, seed_setting, setting, train_each_framework,
                                      under_precision)
from train.backends.jax_multiseed import MultiSeedJaxBackend, vmap_supported
from train.engine.results import atomic_write_json
from train.errors import UsageError
from train.backends.torch_backend import TorchBackend, require_torch, rmsprop_steplr
from train.backends.jax_trainer import select_devices

EXPERIMENT = "rnn-palindrome"
CELLS = ("vanilla", "lstm")
FRAMEWORKS = ("jax", "torch", "all")


@dataclass
class RNNConfig(WithPrecision):
    input_length: int = setting(19, "T: number of input digits (the palindrome has T+1 digits; the label is the last)")
    cell: str = setting("vanilla", "recurrent cell: vanilla (the original's tanh RNN) or lstm")
    framework: str = setting("jax", "jax, torch, or all (every one installed: the same initial weights and batches, "
                                    "then compared)")
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

    @property
    def run_name(self) -> str:
        fw = "" if self.framework in ("jax", "all") else f"-{self.framework}"
        return f"T{self.input_length}-{self.cell}-{self.precision_resolved()}{self.schedule_tag}{fw}-s{self.seed}"

    @property
    def schedule_tag(self) -> str:
        """'' for the default StepLR factor; '-lrgamma1' (constant rate) etc. otherwise, so ablations get their own folders."""
        return "" if self.lr_gamma == 0.1 else f"-lrgamma{self.lr_gamma:g}"

    @property
    def sweep_name(self) -> str:
        """The folder of a sweep with these settings: rnn-sweep, or rnn-sweep-lrgamma1 for the constant-rate ablation."""
        return f"rnn-sweep{self.schedule_tag}"

    def validate(self) -> None:
        if self.framework not in FRAMEWORKS:
            raise UsageError(f"--framework must be one of {', '.join(FRAMEWORKS)}, got {self.framework!r}")
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

    def update(updates, state, params=None):
        norm = optax.tree.norm(updates)
        scale = jnp.minimum(1.0, max_norm / (norm + 1e-6))
        return jax.tree.map(lambda g: g * scale.astype(g.dtype), updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def make_optimizer(cfg: RNNConfig, steps_per_epoch: int):
    """PyTorch's RMSprop (alpha 0.99, eps 1e-8 outside the sqrt) with StepLR, after PyTorch's global-norm clipping."""

    return optax.chain(clip_grad_norm(cfg.clip_norm),
                       optax.rmsprop(step_lr(cfg.lr, cfg.lr_gamma, cfg.lr_step * steps_per_epoch), decay=0.99,
                                     eps=1e-8, eps_in_sqrt=False))


def step_lr(lr: float, gamma: float, every: int):
    """PyTorch's StepLR by optimizer step: ``lr * gamma ** (step // every)``.

    ``optax.exponential_decay(staircase=True)`` computes the same rate but always in float32, even
    in a float64 run; this one keeps the parameters' precision, so a float64 run matches PyTorch's
    StepLR (a Python float) to rounding.
    """
    return lambda count: lr * gamma ** (count // every)


# Evaluation keeps every hidden state of a chunk, [chunk, T, hidden]: bound it, so memory does not grow with T.
EVAL_ELEMENTS = 2**24


def eval_chunk(cfg: RNNConfig) -> int:
    """The evaluation batch: --eval-batch, made smaller for long sequences (64 MiB of fp32 states at most)."""
    return max(1, min(cfg.eval_batch, EVAL_ELEMENTS // (cfg.input_length * cfg.hidden)))


def _grad_norms(graphdef, host_state, x, y) -> list[float]:

    model = nnx.merge(graphdef, host_state.params, host_state.model_state)
    return [float(v) for v in np.asarray(grad_norms_wrt_hidden(model, x, y))]


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
                         dtype=compute_dtype(cfg.precision), rngs=nnx.Rngs(cfg.seed))


def _load(cfg: RNNConfig) -> _Data:
    cfg.validate()
    ds = make_palindrome_data(cfg.input_length, cfg.data_size, cfg.portion_train, seed=cfg.seed)
    n = len(ds.train_y)
    if n < cfg.batch_size:
        raise UsageError(f"--batch-size {cfg.batch_size} is larger than the {n} training sequences "
                         f"(only {len(ds.train_y) + len(ds.test_y)} palindromes of length {cfg.input_length + 1} exist)")
    return _Data(cfg, {"train_x": ds.train_x, "train_y": ds.train_y, "test_x": ds.test_x, "test_y": ds.test_y})


def _runs(data: list[_Data], workdir: Path, grad_norms, framework: str = "jax") -> tuple[list, dict]:
    """The driver's runs for these seeds; ``grad_norms(backend, k, x, y)``: seed k's dL/dh_t on (x, y) once trained.

    Returns (runs, grads): ``grads[seed]`` is filled with dL/dh_t at initialisation by ``measure_init``.
    """

    grads: dict = {}

    def after(d: _Data, k: int):
        def write(run_dir: Path, log, summary: dict, backend) -> None:
            cfg = d.cfg
            trained = grad_norms(backend, k, *d.probe())
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
                         "precision": d.cfg.precision_resolved(), "epochs": d.cfg.epochs,
                         # seeds trained side by side share one program and its wall time
                         "trained_together": len(data)},
                after=after(d, k)) for k, d in enumerate(data)]
    return runs, grads


@under_precision
def train_and_evaluate(cfg: RNNConfig, workdir: str | Path, *, progress: bool | None = None,
                       resume: bool = False, checkpoint_every: int | None = None) -> dict:

    cfg.validate()
    devices = select_devices(cfg.devices, cfg.batch_size)
    d = _load(cfg)

    def make_backend():
        return JaxBackend(d.model(), make_optimizer(cfg, d.steps_per_epoch), lambda x: x, d.arrays,
                          seed=cfg.seed, devices=devices, eval_batch=eval_chunk(cfg), eval_splits=eval_splits(cfg))

    runs, grads = _runs([d], Path(workdir), lambda b, k, x, y: _grad_norms(b.graphdef, b.host_state(), x, y))

    def measure_init(backend):
        grads[cfg.seed] = _grad_norms(backend.graphdef, backend.host_state(), *d.probe())

    return drive(runs, make_backend, [LazyPeriods(d.epoch, cfg.epochs, d.steps_per_epoch)], resume=resume,
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
    cfg, final = cfgs[0], []

    def make_backend():
        return MultiSeedJaxBackend([d.model() for d in data], make_optimizer(cfg, data[0].steps_per_epoch),
                                   lambda x: x, [d.arrays for d in data], seeds=[c.seed for c in cfgs],
                                   device=devices[0], eval_batch=eval_chunk(cfg), eval_splits=eval_splits(cfg))

    def grad_norms(backend, k, x, y):
        if not final:  # every seed's trained state, fetched once
            final.extend(backend.host_state())
        return _grad_norms(backend.graphdef, final[k], x, y)

    runs, grads = _runs(data, Path(workdir), grad_norms)

    def measure_init(backend):
        for d, st in zip(data, backend.host_state()):
            grads[d.cfg.seed] = _grad_norms(backend.graphdef, st, *d.probe())

    schedules = [LazyPeriods(d.epoch, cfg.epochs, d.steps_per_epoch) for d in data]
    seeds = ",".join(str(c.seed) for c in cfgs)
    return drive(runs, make_backend, schedules, resume=resume, checkpoint_every=checkpoint_every, progress=progress,
                 before=measure_init, desc=f"{EXPERIMENT} T{cfg.input_length}-{cfg.cell}-s{{{seeds}}}")


def main(cfg: RNNConfig, out: Path, **loop_kw) -> dict:
    workdir = Path(out) / EXPERIMENT
    if cfg.framework != "all":
        return (train_torch if cfg.framework == "torch" else train_and_evaluate)(cfg, workdir, **loop_kw)
    return train_each_framework(cfg, ("jax", "torch"), lambda c: main(c, out, **loop_kw), workdir)


@under_precision
def train_torch(cfg: RNNConfig, workdir: str | Path, *, progress: bool | None = None, resume: bool = False,
                checkpoint_every: int | None = None) -> dict:
    """The run in PyTorch: the JAX model's initial weights, the same batches, RMSprop + StepLR + clipping."""
    require_torch()
    d = _load(cfg)
    backend = torch_backend(cfg, d.arrays, d.model(), d.steps_per_epoch)
    runs, grads = _runs([d], Path(workdir), lambda b, k, x, y: b.grad_norms(x, y), framework="torch")

    def measure_init(b):
        grads[cfg.seed] = b.grad_norms(*d.probe())

    return drive(runs, lambda: backend, [LazyPeriods(d.epoch, cfg.epochs, d.steps_per_epoch)], resume=resume,
                 checkpoint_every=checkpoint_every, progress=progress, before=measure_init,
                 desc=f"{EXPERIMENT} {cfg.run_name}")[0]


def torch_backend(cfg: RNNConfig, arrays: dict, jax_model, steps_per_epoch: int) -> TorchBackend:
    """The PyTorch twin: ``jax_model``'s initial weights, RMSprop + StepLR + clipping (the bench builds it too)."""
    torch = require_torch()
    from train.backends import torch_models, torch_weights  # optional: only a torch run imports them

    net = (torch_models.LSTMClassifier if cfg.cell == "lstm" else torch_models.VanillaRNN)(10, cfg.hidden, 10)
    torch_weights.load_from_jax(net, jax_model)
    return TorchBackend(net, rmsprop_steplr(cfg.lr, cfg.lr_step, cfg.lr_gamma),
                        lambda x: torch.nn.functional.one_hot(x.long(), 10).float(), arrays, seed=cfg.seed,
                        steps_per_epoch=steps_per_epoch, clip_norm=cfg.clip_norm,
                        precision=cfg.precision_resolved(), eval_batch=eval_chunk(cfg), eval_splits=eval_splits(cfg))


SPEC = Experiment(
    EXPERIMENT, "Part 3: vanilla RNN (or LSTM) on the palindrome task",
    "Part 3: predict the last digit of a (T+1)-digit palindrome from its first T digits. "
    "Defaults are the original's: RMSprop lr 1e-3, StepLR, clip 10, batch 128, 30 epochs.",
    RNNConfig, quick, main)
