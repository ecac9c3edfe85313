"""Part 1 Task 3 (the CIFAR MLP, plain and improved) and Part 2 (the CNN) on CIFAR-10.

Data stays on the accelerator as uint8; each epoch is one compiled call that
gathers its shuffled batches on device, normalises them with the training
set's channel statistics and runs every step; a second call evaluates the test
set (eval mode: batch-norm running statistics, no dropout). The train
loss/accuracy of an epoch is the mean over its steps (train mode), as the
original measured; ``eval_train`` evaluates the whole training split instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from data.cifar10 import channel_stats, load_cifar10
from jax_models.cnn import CNN, resolve_conv_impl
from jax_models.mlp import MLP
from numpy_mlp.model import parse_hidden
from train.analysis import plots
from train.backends import base
from train.backends.jax_backend import fuses, normalizer, optax_optimizer
from train.backends.jax_multiseed import MultiSeedJaxBackend, for_run
from train.engine.schedule import LazyPeriods, epoch_batches
from train.engine.driver import Run, drive
from train.experiments.common import (BATCH_HELP, HIDDEN_HELP, Experiment, PrecisionSetting, devices_setting,
                                      parallel_path, parallel_setting,
                                      epochs_setting, eval_splits, eval_train_setting, framework_help,
                                      precision_setting, require_common, require_positive, seed_setting, setting,
                                      several, train_each_framework)
from train.engine.results import atomic_write_json
from train.experiments.seeds import run_seeds
from train.errors import UsageError
from train.backends.jax_parallel import model_axis
from train.backends.jax_trainer import select_devices


def _build_mlp(cfg, *, dtype, axis_name, rngs):

    improved = cfg.variant == "improved"
    return MLP(32 * 32 * 3, parse_hidden(cfg.hidden), 10, batch_norm=improved, dropout=cfg.dropout if improved else 0.0,
               dtype=dtype, axis_name=axis_name, rngs=rngs)


def _build_cnn(cfg, *, dtype, axis_name, rngs):

    return CNN(dtype=dtype, axis_name=axis_name, rngs=rngs)


@dataclass(frozen=True)
class Model:
    """A CIFAR model by name: its experiment (command and results folder), how to build it, its run-name tag."""

    experiment: str
    build: Callable
    tag: Callable[[object], str]


MODELS = {
    "mlp": Model("mlp-cifar", _build_mlp, lambda cfg: cfg.variant),
    "cnn": Model("cnn-cifar", _build_cnn, lambda cfg: "cnn"),
}
ORDER = ("jax", "torch")  # --framework all: JAX first, then the others


@dataclass
class CifarConfig(PrecisionSetting):
    model: str = setting("mlp", "mlp or cnn (fixed by the command)")
    variant: str = setting("plain", "plain (the original) or improved (batch norm + dropout)")
    framework: str = setting("jax", framework_help("; numpy runs the plain MLP only"))
    data: str = setting("tfds", "CIFAR-10 source: tfds, folder:PATH (train/<class>/*, test/<class>/*), or "
                                "synthetic[:N]")
    data_dir: str | None = setting(None, "tensorflow-datasets data_dir (default: tfds' own, ~/tensorflow_datasets)")
    epochs: int = epochs_setting(50)
    batch_size: int = setting(256, BATCH_HELP)
    lr: float = setting(1e-3, "learning rate")
    weight_decay: float = setting(0.01, "AdamW decoupled weight decay (PyTorch's default 0.01)")
    hidden: str = setting("1024,512,256,256,128", HIDDEN_HELP)
    dropout: float = setting(0.2, "dropout rate of the improved MLP")
    precision: str = precision_setting()
    eval_train: bool = eval_train_setting()
    limit_train: int = setting(0, "use only this many training images (0 = all), for quick runs")
    limit_test: int = setting(0, "use only this many test images (0 = all)")
    eval_batch: int = setting(1000, "batch size of the evaluation passes")
    seed: int = seed_setting()
    devices: int = devices_setting()
    parallel: str = parallel_setting()

    @property
    def experiment(self) -> str:
        return MODELS[self.model].experiment

    @property
    def run_name(self) -> str:
        fw = "" if self.framework == "jax" or several(self.framework) else f"-{self.framework}"
        return f"{MODELS[self.model].tag(self)}-{self.resolved_precision.name}{fw}-s{self.seed}"

    def validate(self) -> None:
        if self.model not in MODELS:
            raise UsageError(f"model must be one of {', '.join(MODELS)}, got {self.model!r}")
        if self.variant not in ("plain", "improved"):
            raise UsageError(f"--variant must be plain or improved, got {self.variant!r}")
        frameworks(self)
        require_positive(self, "epochs", "batch_size", "eval_batch")
        for name in ("limit_train", "limit_test"):
            if getattr(self, name) < 0:
                raise UsageError(f"--{name.replace('_', '-')} must be >= 0 (0 = all), got {getattr(self, name)}")
        if not self.lr > 0 or self.weight_decay < 0:
            raise UsageError("--lr must be positive and --weight-decay non-negative")
        if not 0 <= self.dropout < 1:
            raise UsageError(f"--dropout must be in [0, 1), got {self.dropout}")
        require_common(self)


def frameworks(cfg: CifarConfig) -> base.Chosen:
    """The frameworks ``cfg.framework`` names (``all``: every one installed that runs this model)
    (``.missing``: those ``all`` left out as not installed)."""
    unsupported = {} if (cfg.model, cfg.variant) == ("mlp", "plain") else {
        "numpy": "only the plain MLP has a NumPy model"}
    return base.choose(cfg.framework, ORDER, unsupported)


def mlp_config(**kw) -> CifarConfig:
    """The seed's CIFAR MLP: AdamW lr 1e-3, 50 epochs, batch 256."""
    return CifarConfig(**{"model": "mlp", "epochs": 50, "lr": 1e-3, **kw})


def cnn_config(**kw) -> CifarConfig:
    """The seed's CNN: AdamW lr 1e-4, 30 epochs, batch 256."""
    return CifarConfig(**{"model": "cnn", "epochs": 30, "lr": 1e-4, **kw})


def quick_mlp() -> CifarConfig:
    return mlp_config(data="synthetic:2048", epochs=2, batch_size=128)


def quick_cnn() -> CifarConfig:
    return cnn_config(data="synthetic:256", epochs=1, batch_size=32, limit_test=64, eval_batch=64)


def _subset(x, y, n, seed):
    if not n or n >= len(y):
        return x, y
    keep = np.sort(np.random.default_rng(np.random.SeedSequence([seed, 0x5B5E7])).permutation(len(y))[:n])
    return x[keep], y[keep]


def load_data(cfg: CifarConfig):

    ds = load_cifar10(cfg.data, data_dir=cfg.data_dir, seed=cfg.seed)
    train_x, train_y = _subset(ds.train_x, ds.train_y, cfg.limit_train, cfg.seed)
    test_x, test_y = _subset(ds.test_x, ds.test_y, cfg.limit_test, cfg.seed + 1)
    if len(train_y) < cfg.batch_size:
        raise UsageError(f"--batch-size {cfg.batch_size} is larger than the {len(train_y)} training images")
    return ds, {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}


def build_model(cfg: CifarConfig, *, axis_name: str | None):

    return MODELS[cfg.model].build(cfg, dtype=getattr(jnp, cfg.resolved_precision.compute_dtype), axis_name=axis_name,
                                   rngs=nnx.Rngs(cfg.seed))


def make_preprocess(mean: np.ndarray, std: np.ndarray):
    """uint8 NHWC -> float32 normalised with the training set's per-channel mean and std."""
    return normalizer(mean, std)


def optimizer(cfg: CifarConfig) -> base.Optimizer:
    """PyTorch's AdamW (betas 0.9, 0.999, eps 1e-8, decoupled weight decay)."""
    return base.Optimizer("adamw", cfg.lr, weight_decay=cfg.weight_decay)


def make_optimizer(cfg: CifarConfig):
    return optax_optimizer(optimizer(cfg))


@dataclass
class Data:
    source: Any            # the data set as loaded (its source and class names)
    arrays: dict           # {train_x, train_y, test_x, test_y}, the subsets this run uses
    mean: np.ndarray       # the training images' per-channel statistics
    std: np.ndarray


def make_backend(cfg: CifarConfig, framework: str, data: Data):
    """The ``framework`` backend of this run: the JAX model built from ``cfg.seed``, and for another
    framework its weights converted; every framework normalises with the training set's statistics."""
    devices = select_devices(cfg.devices, cfg.batch_size)
    model = build_model(cfg, axis_name=model_axis(parallel_path(cfg, devices)) if framework == "jax" else None)
    return base.from_jax(framework, model, recipe(cfg, data.mean, data.std, devices), data.arrays)


def recipe(cfg: CifarConfig, mean: np.ndarray, std: np.ndarray, devices=None) -> base.Recipe:
    """How every framework trains this run: AdamW, the training set's channel statistics."""
    return base.Recipe(optimizer(cfg), cfg.seed, cfg.resolved_precision, eval_splits=eval_splits(cfg),
                       eval_batch=cfg.eval_batch, normalize=(mean, std), devices=devices,
                       parallel=parallel_path(cfg, devices) if devices else None)


def write_figures(cfg: CifarConfig, ds, arrays: dict, backend, run_dir: Path, log, summary: dict) -> None:
    """Curves, the test confusion matrix (figure and counts), per-class accuracy, misclassified examples."""
    title = f"{cfg.experiment} ({cfg.run_name})"
    summary["time_per_epoch_s"] = round(summary["train_time_s"] / cfg.epochs, 4)
    plots.plot_curves({cfg.experiment: log.rows}, run_dir / "curves.png", title=title, xlabel="epoch")
    pred = backend.last_predictions["test"]
    counts = plots.plot_confusion(arrays["test_y"], pred, ds.class_names, run_dir / "confusion.png",
                                  title=f"{title}: test confusion matrix")
    per_class = counts.diagonal() / np.maximum(counts.sum(1), 1)
    summary["per_class_test_accuracy"] = {c: round(float(a), 4) for c, a in zip(ds.class_names, per_class)}
    atomic_write_json(run_dir / "confusion.json", {"classes": list(ds.class_names), "rows": "true class",
                                                   "columns": "predicted class", "counts": counts.tolist()})
    plots.plot_misclassified(arrays["test_x"], arrays["test_y"], pred, ds.class_names, run_dir / "misclassified.png")


def _prepare(cfg: CifarConfig, workdir: Path, k: int = 0, together: int = 1) -> tuple[Run, Data, LazyPeriods]:
    """One seed's data, run and schedule, the same whether it trains alone or as run ``k`` of ``together``
    side by side (whose summaries say so: they share one program and its time)."""
    ds, arrays = load_data(cfg)
    mean, std = channel_stats(arrays["train_x"])
    n = len(arrays["train_y"])
    precision = cfg.resolved_precision.name
    run = Run(cfg.experiment, cfg, Path(workdir), cfg.run_name, framework=cfg.framework,
              record={"precision": precision, "data_source": ds.source, "n_train": n,
                      "n_test": len(arrays["test_y"]), "channel_mean": mean, "channel_std": std,
                      # a speed choice, outside the config (and its digest): the same function either way
                      **({"conv_impl": resolve_conv_impl("auto")} if cfg.model == "cnn" and cfg.framework == "jax"
                         else {})},
              summary={"precision": precision, "epochs": cfg.epochs, "data_source": ds.source,
                       **({"trained_together": together} if together > 1 else {})},
              after=lambda run_dir, log, summary, backend: write_figures(cfg, ds, arrays, for_run(backend, k),
                                                                         run_dir, log, summary))
    schedule = LazyPeriods(lambda e: epoch_batches(n, cfg.batch_size, e, cfg.seed), cfg.epochs, n // cfg.batch_size)
    return run, Data(ds, arrays, mean, std), schedule


def train_and_evaluate(cfg: CifarConfig, workdir: str | Path, *, progress: bool | None = None,
                       resume: bool = False, checkpoint_every: int | None = None) -> dict:

    cfg.validate()
    select_devices(cfg.devices, cfg.batch_size)  # a bad --devices fails before the data loads
    run, data, schedule = _prepare(cfg, Path(workdir))
    return drive([run], lambda: make_backend(cfg, cfg.framework, data), [schedule], resume=resume,
                 checkpoint_every=checkpoint_every, progress=progress, desc=f"{cfg.experiment} {cfg.run_name}")[0]


def train_seeds_together(cfgs: list[CifarConfig], workdir: str | Path, *, progress: bool | None = None,
                         resume: bool = False, checkpoint_every: int | None = None) -> list[dict]:
    """JAX runs ``cfgs`` (differing only in ``seed``) in one vmapped program on one device; each seed's
    data, channel statistics and folder are its single run's."""
    for c in cfgs:
        c.validate()
    devices = select_devices(cfgs[0].devices, cfgs[0].batch_size)
    prepared = [_prepare(c, Path(workdir), k, len(cfgs)) for k, c in enumerate(cfgs)]
    cfg, data = cfgs[0], [p[1] for p in prepared]

    def make():
        models = [build_model(c, axis_name=None) for c in cfgs]
        return MultiSeedJaxBackend(models, make_optimizer(cfg), lambda x: x, [d.arrays for d in data],
                                   seeds=[c.seed for c in cfgs], devices=devices, eval_batch=cfg.eval_batch,
                                   eval_splits=eval_splits(cfg), precision=cfg.resolved_precision,
                                   normalize=[(d.mean, d.std) for d in data], fuse=fuses(models[0], devices))

    tag = cfg.run_name.rsplit("-s", 1)[0]
    return drive([p[0] for p in prepared], make, [p[2] for p in prepared], resume=resume,
                 checkpoint_every=checkpoint_every, progress=progress,
                 desc=f"{cfg.experiment} {tag}-s{{{','.join(str(c.seed) for c in cfgs)}}}")


def main(cfg: CifarConfig, out: Path, **loop_kw) -> dict:
    workdir = Path(out) / cfg.experiment
    if not several(cfg.framework):
        return train_and_evaluate(cfg, workdir, **loop_kw)
    return train_each_framework(cfg, frameworks(cfg), lambda c: train_and_evaluate(c, workdir, **loop_kw), workdir)


def main_seeds(cfg: CifarConfig, out: Path, seeds: int, *, resume: bool = False, **loop_kw):
    """``--seeds K``: seeds cfg.seed .. cfg.seed + K - 1 of every framework (see train/experiments/seeds.py)."""
    workdir = Path(out) / cfg.experiment
    return run_seeds(cfg, seeds, frameworks(cfg), workdir, name=cfg.experiment, resume=resume,
                     alone=lambda cs, fw, cont: [train_and_evaluate(cs[0], workdir, resume=cont, **loop_kw)],
                     together=lambda cs, fw, cont: train_seeds_together(cs, workdir, resume=cont, **loop_kw),
                     compare_name=f"{cfg.run_name}-seeds{seeds}-compare")


MLP_SPEC = Experiment(
    "mlp-cifar", "Part 1 Task 3: the CIFAR-10 MLP (plain or improved)",
    "Part 1 Task 3: MLP 3072-1024-512-256-256-128-10 on CIFAR-10. "
    "Defaults are the original's: AdamW lr 1e-3, 50 epochs, batch 256.",
    mlp_config, quick_mlp, main, fixed=("model",), main_seeds=main_seeds)
CNN_SPEC = Experiment(
    "cnn-cifar", "Part 2: the five-block CNN on CIFAR-10",
    "Part 2: the seed's five-block CNN (3x3 conv + BN + ReLU, 3x3/2 max pool) on CIFAR-10. "
    "Defaults are the original's: AdamW lr 1e-4, 30 epochs, batch 256.",
    cnn_config, quick_cnn, main, fixed=("model", "variant", "hidden", "dropout"), main_seeds=main_seeds)
