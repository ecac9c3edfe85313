"""Part 1 Task 3 (the CIFAR MLP, plain and improved) and Part 2 (the CNN) on CIFAR-10.

Data stays on the accelerator as uint8; each epoch is one compiled call that
gathers its shuffled batches on device, normalises them with the training
set's channel statistics and runs every step; a second call evaluates the test
set (eval mode: batch-norm running statistics, no dropout). The train
loss/accuracy of an epoch is the mean over its steps (train mode), as the
original measured; ``eval_train`` evaluates the whole training split instead.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from train import plots
from train.experiments.common import (compute_dtype, eval_splits, require_common, require_positive,
                                     resolve_precision, under_precision)
from train.results import (UsageError, atomic_write_json, finish_run, make_summary, one_line, prepare_run_dir,
                           start_attempt)

MODELS = ("mlp", "cnn")


@dataclass
class CifarConfig:
    model: str = "mlp"             # mlp | cnn
    variant: str = "plain"         # mlp only: plain | improved (batch norm + dropout)
    data: str = "tfds"             # tfds | folder:PATH | synthetic[:N]
    data_dir: str | None = None    # tfds data_dir
    epochs: int = 50
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.01     # PyTorch AdamW's default (optax's default is 1e-4)
    hidden: str = "1024,512,256,256,128"
    dropout: float = 0.2           # improved variant
    precision: str = "fp32"        # fp32 (the original's) | tf32 | bf16 | auto (bf16 on GPU, fp32 on CPU)
    eval_train: bool = False       # False: train metrics = mean over the epoch's steps (the original's)
    limit_train: int = 0           # 0: the whole training split
    limit_test: int = 0            # 0: the whole test split
    eval_batch: int = 1000
    seed: int = 0
    devices: int = 0               # 0: all local devices; 1: plain single-device jit

    @property
    def experiment(self) -> str:
        return "cnn-cifar" if self.model == "cnn" else "mlp-cifar"

    @property
    def run_name(self) -> str:
        tag = self.variant if self.model == "mlp" else "cnn"
        return f"{tag}-{self.precision_resolved()}-s{self.seed}"

    def precision_resolved(self) -> str:
        return resolve_precision(self.precision)

    def validate(self) -> None:
        if self.model not in MODELS:
            raise UsageError(f"model must be one of {', '.join(MODELS)}, got {self.model!r}")
        if self.variant not in ("plain", "improved"):
            raise UsageError(f"--variant must be plain or improved, got {self.variant!r}")
        require_positive(self, "epochs", "batch_size", "eval_batch")
        for name in ("limit_train", "limit_test"):
            if getattr(self, name) < 0:
                raise UsageError(f"--{name.replace('_', '-')} must be >= 0 (0 = all), got {getattr(self, name)}")
        if not self.lr > 0 or self.weight_decay < 0:
            raise UsageError("--lr must be positive and --weight-decay non-negative")
        if not 0 <= self.dropout < 1:
            raise UsageError(f"--dropout must be in [0, 1), got {self.dropout}")
        require_common(self)


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
    from data.cifar10 import load_cifar10

    ds = load_cifar10(cfg.data, data_dir=cfg.data_dir, seed=cfg.seed)
    train_x, train_y = _subset(ds.train_x, ds.train_y, cfg.limit_train, cfg.seed)
    test_x, test_y = _subset(ds.test_x, ds.test_y, cfg.limit_test, cfg.seed + 1)
    if len(train_y) < cfg.batch_size:
        raise UsageError(f"--batch-size {cfg.batch_size} is larger than the {len(train_y)} training images")
    return ds, {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}


def build_model(cfg: CifarConfig, *, axis_name: str | None):
    from flax import nnx

    dtype = compute_dtype(cfg.precision)
    rngs = nnx.Rngs(cfg.seed)
    if cfg.model == "cnn":
        from jax_models.cnn import CNN
        return CNN(dtype=dtype, axis_name=axis_name, rngs=rngs)
    from jax_models.mlp import MLP
    improved = cfg.variant == "improved"
    return MLP(32 * 32 * 3, cfg.hidden, 10, batch_norm=improved, dropout=cfg.dropout if improved else 0.0,
               dtype=dtype, axis_name=axis_name, rngs=rngs)


def make_optimizer(cfg: CifarConfig):
    """AdamW with PyTorch's defaults (betas 0.9, 0.999; eps 1e-8) and ``cfg.weight_decay``."""
    import optax

    return optax.adamw(cfg.lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=cfg.weight_decay)


def make_preprocess(mean: np.ndarray, std: np.ndarray):
    """uint8 NHWC -> float32 normalised with the training set's per-channel mean and std."""
    import jax.numpy as jnp

    mean = jnp.asarray(mean, jnp.float32)
    inv_std = jnp.asarray(1.0 / std, jnp.float32)

    def preprocess(x):
        return (x.astype(jnp.float32) * (1.0 / 255.0) - mean) * inv_std
    return preprocess


@under_precision
def train_and_evaluate(cfg: CifarConfig, workdir: str | Path, *, progress: bool | None = None,
                       resume: bool = False, checkpoint_every: int | None = None) -> dict:
    import jax

    from data.cifar10 import channel_stats
    from train.backends import JaxBackend, LazyPeriods, epoch_batches
    from train.loop import check_resumable, train_loop
    from train.results import device_info, package_versions
    from train.trainer import AXIS, select_devices

    cfg.validate()
    devices = select_devices(cfg.devices, cfg.batch_size)
    ds, arrays = load_data(cfg)
    mean, std = channel_stats(arrays["train_x"])
    workdir = Path(workdir)
    if resume:
        check_resumable(workdir / cfg.run_name, dataclasses.asdict(cfg))
    run_dir = prepare_run_dir(workdir.parent, workdir.name, cfg.run_name)
    model = build_model(cfg, axis_name=AXIS if len(devices) * jax.process_count() > 1 else None)
    tx = make_optimizer(cfg)
    # See Trainer: on CPU, convolutions run far faster one step per call than inside a fused scan.
    fuse = not (cfg.model == "cnn" and devices[0].platform == "cpu")
    backend = JaxBackend(model, tx, make_preprocess(mean, std), arrays, seed=cfg.seed, devices=devices,
                         eval_batch=cfg.eval_batch, eval_splits=eval_splits(cfg), fuse=fuse)
    start_attempt(run_dir, {
        "experiment": cfg.experiment, "framework": "jax", "config": dataclasses.asdict(cfg),
        "precision": cfg.precision_resolved(), "data_source": ds.source,
        "n_train": len(arrays["train_y"]), "n_test": len(arrays["test_y"]),
        "channel_mean": mean, "channel_std": std, "versions": package_versions(), "devices": device_info()},
        resume=resume)
    n = len(arrays["train_y"])
    schedule = LazyPeriods(lambda e: epoch_batches(n, cfg.batch_size, e, cfg.seed), cfg.epochs, n // cfg.batch_size)
    log, timing = train_loop(backend, schedule, run_dir, resume=resume, checkpoint_every=checkpoint_every,
                             epochs=True, desc=f"{cfg.experiment} {cfg.run_name}", progress=progress)
    summary = make_summary(cfg.experiment, "jax", log.rows, timing,
                           param_count=backend.param_count, devices=backend.devices,
                           extra={"precision": cfg.precision_resolved(), "epochs": cfg.epochs,
                                  "time_per_epoch_s": round(timing["train_time_s"] / cfg.epochs, 4),
                                  "data_source": ds.source})
    title = f"{cfg.experiment} ({cfg.run_name})"
    plots.plot_curves({cfg.experiment: log.rows}, run_dir / "curves.png", title=title, xlabel="epoch")
    pred = backend.last_predictions["test"]
    counts = plots.plot_confusion(arrays["test_y"], pred, ds.class_names, run_dir / "confusion.png",
                                  title=f"{title}: test confusion matrix")
    per_class = counts.diagonal() / np.maximum(counts.sum(1), 1)
    summary["per_class_test_accuracy"] = {c: round(float(a), 4) for c, a in zip(ds.class_names, per_class)}
    atomic_write_json(run_dir / "confusion.json", {"classes": list(ds.class_names), "rows": "true class",
                                                   "columns": "predicted class", "counts": counts.tolist()})
    plots.plot_misclassified(arrays["test_x"], arrays["test_y"], pred, ds.class_names, run_dir / "misclassified.png")
    summary = finish_run(run_dir, summary)
    print(one_line(summary))
    return summary
