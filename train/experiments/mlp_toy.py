"""Part 1, Tasks 1-2: the 2-20-2 MLP on moons, circles and blobs, in NumPy, JAX and PyTorch.

Every framework starts from the same NumPy-drawn weights and batches, so curves coincide up to
float rounding. The default ``numpy,jax`` is the original's NumPy-vs-framework study.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from flax import nnx

from data.toy import DATASETS, make_toy_data
from jax_models.mlp import MLP as JaxMLP, set_mlp_weights
from numpy_mlp import MLP as NumpyMLP, parse_hidden
from train.analysis import plots
from train.backends import base
from train.backends.jax_backend import TINY_OPTIONS, optax_optimizer, x64_scope
from train.backends.jax_multiseed import MultiSeedJaxBackend, for_run
from train.engine.schedule import batch_stream
from train.analysis.compare import compare_runs
from train.engine.driver import Run, check_resumable, drive
from train.experiments.common import (BATCH_HELP, HIDDEN_HELP, Experiment, devices_setting, framework_help,
                                      parallel_path, parallel_setting,
                                      note_missing, require_common, require_positive, seed_setting, setting)
from train.engine.results import run_config
from train.experiments.seeds import run_seeds
from train.errors import UsageError
from train.backends.jax_trainer import select_devices
from train.precision import TABLE

EXPERIMENT = "mlp-toy"
ALIASES = {"both": "numpy,jax"}  # the name the default had


@dataclass
class ToyConfig:
    dataset: str = setting("moons", "toy data set: moons, circles, blobs, or all")
    # NumPy and JAX, not jax as elsewhere: Part 1's point is the NumPy-vs-framework comparison.
    framework: str = setting("numpy,jax", framework_help("; numpy,jax is the original's comparison, "
                                                                   "curves overlaid"))
    samples: int = setting(1000, "number of samples drawn from scikit-learn")
    noise: float | None = setting(None, "moons/circles noise or blobs cluster std (default: 0.2 moons, "
                                        "0.1 circles, 1.0 blobs)")
    test_fraction: float = setting(0.2, "fraction of samples held out for testing")
    hidden: str = setting("20", HIDDEN_HELP)
    lr: float = setting(0.01, "learning rate")
    steps: int = setting(1500, "training steps")
    batch_size: int = setting(30, BATCH_HELP)
    eval_every: int = setting(30, "evaluate train and test loss/accuracy every this many steps")
    seed: int = seed_setting()
    dtype: str = setting("float32", "float dtype of parameters and data: float32 or float64 (float64 trains "
                                    "in JAX's x64 mode, for this run only)")
    devices: int = devices_setting()
    parallel: str = parallel_setting()

    def validate(self) -> None:
        if self.dataset not in DATASETS:
            raise UsageError(f"--dataset must be one of {', '.join(DATASETS)}, got {self.dataset!r}")
        frameworks(self)
        require_positive(self, "samples", "steps", "batch_size", "eval_every")
        if not self.lr > 0:
            raise UsageError(f"--lr must be positive, got {self.lr}")
        if self.dtype not in ("float32", "float64"):
            raise UsageError(f"--dtype must be float32 or float64, got {self.dtype!r}")
        require_common(self)


def quick() -> ToyConfig:
    """A smoke-test variant: a few hundred steps."""
    return ToyConfig(steps=300, samples=400)


def schedule(cfg: ToyConfig, n_train: int) -> list[np.ndarray]:

    idx = batch_stream(n_train, cfg.batch_size, cfg.steps, cfg.seed)
    return [idx[i:i + cfg.eval_every] for i in range(0, cfg.steps, cfg.eval_every)]


def frameworks(cfg: ToyConfig) -> base.Chosen:
    """The frameworks ``cfg.framework`` names; ``all`` leaves out PyTorch where it is not installed."""
    return base.choose(cfg.framework, ("numpy", "jax"), aliases=ALIASES)


def jax_model(cfg: ToyConfig):
    """The JAX MLP with the NumPy MLP's initial weights; built abstractly, as eager initialisers
    would compile one program per parameter shape."""
    dtype = np.dtype(cfg.dtype)
    model = nnx.eval_shape(lambda: JaxMLP(2, parse_hidden(cfg.hidden), 2, dtype=dtype, param_dtype=dtype, rngs=nnx.Rngs(cfg.seed)))
    set_mlp_weights(model, NumpyMLP(2, cfg.hidden, 2, seed=cfg.seed, dtype=dtype).get_weights())
    return model


def _arrays(cfg: ToyConfig, data) -> dict:
    arrays = {"train_x": data.train_x, "train_y": data.train_y, "test_x": data.test_x, "test_y": data.test_y}
    return {k: v.astype(np.dtype(cfg.dtype)) if k.endswith("_x") else v for k, v in arrays.items()}


def make_backend(cfg: ToyConfig, framework: str, data):
    """The ``framework`` backend: the JAX MLP (NumPy's initial weights), converted for another framework; plain
    SGD. Call it in ``x64_scope(cfg.dtype)``."""
    return base.from_jax(framework, jax_model(cfg), recipe(cfg), _arrays(cfg, data))


def recipe(cfg: ToyConfig) -> base.Recipe:
    return base.Recipe(base.Optimizer("sgd", cfg.lr), cfg.seed, TABLE["fp32"], dtype=cfg.dtype, tiny=True,
                       devices=(devs := select_devices(cfg.devices, cfg.batch_size)),
                       parallel=parallel_path(cfg, devs))


def build_backends(cfg: ToyConfig, data) -> dict:
    """Every framework of ``cfg.framework``'s backend, all from the same initial weights."""
    return {fw: make_backend(cfg, fw, data) for fw in frameworks(cfg)}


def load(cfg: ToyConfig):
    return make_toy_data(cfg.dataset, n_samples=cfg.samples, noise=cfg.noise, test_fraction=cfg.test_fraction,
                         seed=cfg.seed)


def run_name(cfg: ToyConfig, framework: str) -> str:
    return f"{cfg.dataset}-{framework}-s{cfg.seed}"


def toy_run(cfg: ToyConfig, fw: str, workdir: Path, data, made: dict, k: int = 0, together: int = 1) -> Run:
    """The ``fw`` run of ``cfg`` (run ``k`` of ``together`` side by side, which share one program and its
    time); its figures, and ``made[fw]``: (run folder, metric rows)."""
    def figures(run_dir, log, summary, backend):
        backend = for_run(backend, k)
        made[fw] = (run_dir, log.rows)
        plots.plot_curves({fw: log.rows}, run_dir / "curves.png", title=f"{cfg.dataset}: {fw} MLP")
        plots.plot_decision_boundary(
            backend.predict_proba, data, run_dir / "decision_boundary.png",
            title=f"{cfg.dataset}: {fw} MLP, test acc {summary['final']['test_accuracy']:.3f}")
    return Run(EXPERIMENT, cfg, workdir, run_name(cfg, fw), framework=fw,
               summary={"dataset": cfg.dataset, "seed": cfg.seed, **({"trained_together": together} if together > 1
                                                                      else {})}, after=figures)


def train_and_evaluate(cfg: ToyConfig, workdir: str | Path, *, progress: bool | None = None,
                       resume: bool = False, checkpoint_every: int = 0) -> dict[str, dict]:
    """Run the configured frameworks under ``workdir`` -> summaries. No checkpoints by default:
    saving costs more than rerunning a run this small."""

    cfg.validate()
    with x64_scope(cfg.dtype):  # a float64 run's arrays and programs, and no other run's
        return _train(cfg, Path(workdir), progress=progress, resume=resume, checkpoint_every=checkpoint_every)


def _train(cfg: ToyConfig, workdir: Path, *, progress: bool | None, resume: bool, checkpoint_every: int) -> dict:
    data = load(cfg)
    periods = schedule(cfg, len(data.train_y))
    note_missing(chosen := frameworks(cfg))
    backends = {fw: make_backend(cfg, fw, data) for fw in chosen}
    if resume:  # every framework's folder, before any of them is written
        for fw in backends:
            check_resumable(workdir / run_name(cfg, fw), run_config(cfg))
    summaries, made = {}, {}
    for fw, backend in backends.items():
        summaries[fw] = drive([toy_run(cfg, fw, workdir, data, made)], lambda backend=backend: backend, [periods],
                              resume=resume, checkpoint_every=checkpoint_every, progress=progress, epochs=False,
                              desc=f"{cfg.dataset} {fw}")[0]
    plots.plot_toy_datasets([data], workdir / f"{cfg.dataset}-data-s{cfg.seed}.png")
    if len(backends) > 1:  # every pair of frameworks, from the runs in memory (a process that writes nothing has them)
        runs = [{"label": f"{workdir.name}/{d.name}", "path": str(d), "summary": summaries[fw], "rows": rows}
                for fw, (d, rows) in made.items()]
        summaries["compare"] = compare_runs(runs, workdir / f"{cfg.dataset}-compare-s{cfg.seed}")
    return summaries


def train_seeds(cfgs: list[ToyConfig], fw: str, workdir: Path, *, together: bool, progress: bool | None = None,
                resume: bool = False, checkpoint_every: int = 0) -> list[dict]:
    """Framework ``fw``'s runs of ``cfgs`` (differing only in seed): JAX side by side in one vmapped
    program with ``together``, else one after the other; each folder is its single run's."""
    for c in cfgs:
        c.validate()
    with x64_scope(cfgs[0].dtype):
        datas = [load(c) for c in cfgs]
        loop = {"resume": resume, "checkpoint_every": checkpoint_every, "progress": progress, "epochs": False}
        if together and len(cfgs) > 1:
            runs = [toy_run(c, fw, workdir, d, {}, k, len(cfgs)) for k, (c, d) in enumerate(zip(cfgs, datas))]
            out = drive(runs, lambda: _seeds_backend(cfgs, datas), [schedule(c, len(d.train_y)) for c, d in
                                                                    zip(cfgs, datas)],
                        desc=f"{cfgs[0].dataset} {fw} s{{{','.join(str(c.seed) for c in cfgs)}}}", **loop)
        else:
            out = [drive([toy_run(c, fw, workdir, d, {})], lambda c=c, d=d: make_backend(c, fw, d),
                         [schedule(c, len(d.train_y))], desc=f"{c.dataset} {fw} s{c.seed}", **loop)[0]
                   for c, d in zip(cfgs, datas)]
    for c, d in zip(cfgs, datas):
        plots.plot_toy_datasets([d], workdir / f"{c.dataset}-data-s{c.seed}.png")
    return out


def _seeds_backend(cfgs: list[ToyConfig], datas: list) -> MultiSeedJaxBackend:
    """What from_jax builds for each seed alone, vmapped over the seeds."""
    r = recipe(cfgs[0])
    return MultiSeedJaxBackend([jax_model(c) for c in cfgs], optax_optimizer(r.optimizer), lambda x: x,
                               [_arrays(c, d) for c, d in zip(cfgs, datas)], seeds=[c.seed for c in cfgs],
                               devices=r.devices, eval_splits=r.eval_splits, precision=r.precision,
                               compiler_options=TINY_OPTIONS)


def main(cfg: ToyConfig, out: Path, **loop_kw) -> dict[str, dict]:
    """``--dataset all`` runs the three sets one after the other; a float64 run trains in JAX's x64
    mode (``train_and_evaluate`` turns it on for the run only)."""
    result = {}
    for name in DATASETS if cfg.dataset == "all" else (cfg.dataset,):
        run_cfg = dataclasses.replace(cfg, dataset=name)
        run_cfg.validate()
        result[name] = train_and_evaluate(run_cfg, Path(out) / EXPERIMENT, **loop_kw)
    return result if cfg.dataset == "all" else result[cfg.dataset]


def main_seeds(cfg: ToyConfig, out: Path, seeds: int, *, resume: bool = False, **loop_kw) -> dict:
    """``--seeds K``: {framework: K summaries, "compare": grouped by framework} (per data set for ``all``)."""
    workdir, result = Path(out) / EXPERIMENT, {}
    for name in DATASETS if cfg.dataset == "all" else (cfg.dataset,):
        run_cfg = dataclasses.replace(cfg, dataset=name)
        run_cfg.validate()
        result[name] = run_seeds(
            run_cfg, seeds, frameworks(run_cfg), workdir, name=EXPERIMENT, resume=resume, keyed=True,
            framework_config=lambda c, fw: c, run_name=run_name,
            alone=lambda cs, fw, cont: train_seeds(cs, fw, workdir, together=False, resume=cont, **loop_kw),
            together=lambda cs, fw, cont: train_seeds(cs, fw, workdir, together=True, resume=cont, **loop_kw),
            compare_name=f"{name}-compare-s{cfg.seed}-seeds{seeds}")
    return result if cfg.dataset == "all" else result[cfg.dataset]


SPEC = Experiment(
    EXPERIMENT, "Part 1 Tasks 1-2: 2-20-2 MLP on moons/circles/blobs, NumPy and JAX",
    "Part 1 Tasks 1-2: the 2-20-2 MLP on a scikit-learn toy set, in NumPy and/or JAX/Flax. "
    "Defaults are the original's: SGD lr 0.01, 1500 steps, batch 30, eval every 30 steps.",
    ToyConfig, quick, main, checkpoint_every=0, main_seeds=main_seeds)
