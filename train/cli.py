"""Command line: ``python -m train <experiment> [flags]``.

Each experiment is a config dataclass plus ``train_and_evaluate(config,
workdir)``; flags are generated from the dataclass so every setting is a flag,
and ``--quick`` swaps in the experiment's tiny smoke-test defaults. Bad input
is reported as one line on stderr with exit code 2, never a traceback
(set JAX_CURRICULUM_DEBUG=1 to see one).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path

from train.results import UsageError

HELP = {
    # shared
    "seed": "random seed: same seed and config give the same numbers",
    "devices": "data-parallel devices (jax.pmap over local devices); 1 = plain single-device jit",
    "dtype": "float dtype of parameters and data: float32 or float64 (float64 enables jax_enable_x64)",
    "lr": "learning rate",
    "batch_size": "(global) mini-batch size",
    "steps": "training steps",
    "eval_every": "evaluate train and test loss/accuracy every this many steps",
    "hidden": "hidden layer sizes, comma-separated, e.g. '20' or '1024,512'",
    # toy
    "dataset": "toy data set: moons, circles, blobs, or all",
    "framework": "implementation: numpy, jax, or both (same init, same batches, curves overlaid)",
    "samples": "number of samples drawn from scikit-learn",
    "noise": "moons/circles noise or blobs cluster std (default: 0.2 moons, 0.1 circles, 1.0 blobs)",
    "test_fraction": "fraction of samples held out for testing",
    # cifar
    "variant": "plain (the original) or improved (batch norm + dropout)",
    "data": "CIFAR-10 source: tfds, folder:PATH (train/<class>/*, test/<class>/*), or synthetic[:N]",
    "data_dir": "tensorflow-datasets data_dir (default: tfds' own, ~/tensorflow_datasets)",
    "epochs": "training epochs (one compiled call each, evaluation after each)",
    "weight_decay": "AdamW decoupled weight decay (PyTorch's default 0.01)",
    "dropout": "dropout rate of the improved MLP",
    "precision": "compute precision: fp32 (full fp32 matmuls, as PyTorch), tf32 (fp32 with TF32 matmuls and "
                 "convolutions, XLA's GPU default), bf16, or auto (bf16 on GPU, fp32 on CPU); params, optimizer "
                 "and loss stay fp32",
    "limit_train": "use only this many training images (0 = all), for quick runs",
    "limit_test": "use only this many test images (0 = all)",
    "eval_batch": "batch size of the evaluation passes",
    "eval_train": "evaluate the whole training split in eval mode after each epoch; by default the train "
                  "loss/accuracy of an epoch is the mean over its training steps (train mode), as the original measured",
    # rnn
    "input_length": "T: number of input digits (the palindrome has T+1 digits; the label is the last)",
    "cell": "recurrent cell: vanilla (the original's tanh RNN) or lstm",
    "data_size": "distinct palindromes drawn (capped at the 10^ceil((T+1)/2) that exist)",
    "portion_train": "fraction of the data used for training",
    "lr_step": "StepLR: decay the learning rate every this many epochs",
    "lr_gamma": "StepLR: multiply the learning rate by this factor",
    "clip_norm": "clip gradients to this global norm",
    "grad_probe": "test sequences used to measure the gradient norm reaching each h_t",
}


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (plus exit code 2) instead of the whole usage block."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def _field_type(f: dataclasses.Field) -> Callable[[str], object]:
    t = f.type if not isinstance(f.type, str) else eval(f.type, vars(typing))  # noqa: S307 - our own annotations
    args = [a for a in typing.get_args(t) if a is not type(None)]
    if isinstance(t, types.UnionType) or typing.get_origin(t) is typing.Union:
        t = args[0]
    if t is bool:
        return _parse_bool(f.name)
    return t


def _parse_bool(name: str) -> Callable[[str], bool]:
    def parse(text: str) -> bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise argparse.ArgumentTypeError(f"--{name.replace('_', '-')} must be true or false, got {text!r}")
    return parse


def add_config_args(p: argparse.ArgumentParser, defaults, skip: tuple[str, ...] = ()) -> None:
    """One --flag per field of the config dataclass instance ``defaults`` (shown in --help)."""
    for f in dataclasses.fields(defaults):
        if f.name in skip:
            continue
        default = getattr(defaults, f.name)
        # A bare --flag means true for a bool setting; --flag false still works.
        as_bool = {"nargs": "?", "const": True, "metavar": "BOOL"} if f.type in (bool, "bool") else {}
        p.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=_field_type(f), default=None,
                       **{"metavar": f.name.upper(), **as_bool},
                       help=f"{HELP.get(f.name, f.name)} (default: {default})")


def config_from_args(args: argparse.Namespace, default: Callable, quick: Callable | None):
    """The experiment's defaults (or its quick variant with --quick), overridden by the flags given."""
    base = quick() if (quick and getattr(args, "quick", False)) else default()
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(base)
             if getattr(args, f.name, None) is not None}
    return dataclasses.replace(base, **given)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="results", help="results root; runs go to <out>/<experiment>/<run-name>/ (default: results)")
    p.add_argument("--quick", action="store_true", help="tiny smoke-test variant of the experiment's defaults")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in its run folder from its latest checkpoint (same flags as the original run)")
    p.add_argument("--checkpoint-every", type=int, default=None, metavar="N",
                   help="save a checkpoint every N evaluation periods, waiting for the disk if needed (default: "
                        "every epoch for which the background writer is free, so training never waits for it; off for "
                        "mlp-toy, whose whole run takes about a second); 0 turns checkpoints off")
    g = p.add_argument_group("multi-process (several hosts); each flag also reads the environment variable named")
    g.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                   help="address of process 0's coordinator service (JAX_COORDINATOR_ADDRESS)")
    g.add_argument("--num-processes", type=int, default=None, help="processes in the job (JAX_NUM_PROCESSES)")
    g.add_argument("--process-id", type=int, default=None, help="this process's index, 0-based (JAX_PROCESS_ID)")
    g.add_argument("--distributed", action="store_true",
                   help="join a job whose settings a cluster launcher provides (SLURM, Open MPI, ...): "
                        "jax.distributed.initialize() detects them (JAX_DISTRIBUTED=1)")


def init_distributed(args) -> None:
    """Join a multi-process job when asked to, before anything touches a JAX device.

    Every process trains on its own local devices and feeds them its own shard of each global
    batch; gradients are averaged over all devices of all processes; only process 0 writes results.
    """
    env = os.environ
    coord = getattr(args, "coordinator", None) or env.get("JAX_COORDINATOR_ADDRESS")
    nproc = getattr(args, "num_processes", None) or (int(env["JAX_NUM_PROCESSES"]) if env.get("JAX_NUM_PROCESSES") else None)
    pid = getattr(args, "process_id", None)
    if pid is None and env.get("JAX_PROCESS_ID"):
        pid = int(env["JAX_PROCESS_ID"])
    auto = getattr(args, "distributed", False) or env.get("JAX_DISTRIBUTED", "") in ("1", "true")
    if not (coord or nproc or auto):
        return
    if not auto and (coord is None or nproc is None or pid is None):
        raise UsageError("a multi-process run needs --coordinator, --num-processes and --process-id "
                         "(or JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID)")
    if nproc is not None and (nproc < 1 or pid is None or not 0 <= pid < nproc):
        raise UsageError(f"--process-id must be in [0, {nproc}), got {pid}")
    import jax

    from train.results import set_writer
    # CPU collectives across processes need gloo; GPUs use NCCL on their own.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if auto and coord is None:
        jax.distributed.initialize()
    else:
        jax.distributed.initialize(coordinator_address=coord, num_processes=nproc, process_id=pid)
    set_writer(jax.process_index() == 0)


def _loop_kwargs(args, default_every: int | None) -> dict:
    every = default_every if args.checkpoint_every is None else args.checkpoint_every
    if every is not None and every < 0:
        raise UsageError(f"--checkpoint-every must be >= 0, got {every}")
    return {"progress": False if args.no_progress else None, "resume": args.resume, "checkpoint_every": every}


def _enable_x64_if(dtype: str) -> None:
    if dtype == "float64":
        import jax
        jax.config.update("jax_enable_x64", True)


def cmd_mlp_toy(args) -> int:
    from data.toy import DATASETS
    from train.experiments import mlp_toy

    cfg = config_from_args(args, mlp_toy.ToyConfig, mlp_toy.quick)
    names = DATASETS if cfg.dataset == "all" else (cfg.dataset,)
    _enable_x64_if(cfg.dtype)
    for name in names:
        run_cfg = dataclasses.replace(cfg, dataset=name)
        run_cfg.validate()
        mlp_toy.train_and_evaluate(run_cfg, Path(args.out) / mlp_toy.EXPERIMENT, **_loop_kwargs(args, 0))
    return 0


def _cmd_cifar(model: str):
    def cmd(args) -> int:
        from train.experiments import cifar

        base, quick = (cifar.mlp_config, cifar.quick_mlp) if model == "mlp" else (cifar.cnn_config, cifar.quick_cnn)
        cfg = config_from_args(args, base, quick)
        cfg.validate()
        cifar.train_and_evaluate(cfg, Path(args.out) / cfg.experiment, **_loop_kwargs(args, None))
        return 0
    return cmd


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def cmd_rnn(args) -> int:
    from train.experiments import rnn

    cfg = config_from_args(args, rnn.RNNConfig, rnn.quick)
    cfg.validate()
    rnn.train_and_evaluate(cfg, Path(args.out) / rnn.EXPERIMENT, **_loop_kwargs(args, None))
    return 0


def cmd_rnn_sweep(args) -> int:
    from train.experiments import rnn

    cfg = config_from_args(args, rnn.RNNConfig, rnn.quick)
    cfg.validate()
    kw = _loop_kwargs(args, None)
    # --resume: finished runs are read back, interrupted groups continue from their checkpoints.
    rnn.sweep(cfg, args.lengths, args.seeds, [c.strip() for c in args.cells.split(",") if c.strip()], args.out,
              reuse=kw["resume"], **kw)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from train.experiments import cifar, mlp_toy, rnn

    parser = OneLineParser(prog="python -m train", description=(
        "JAX/Flax reimplementation of a three-part deep-learning assignment, with a NumPy baseline. "
        "Each command trains one experiment and writes config.json, metrics.jsonl, summary.json "
        "and figures under <out>/<experiment>/<run-name>/."))
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    sub.required = True
    def experiment(name, help, description, defaults, func, skip=(), **fixed):
        p = sub.add_parser(name, help=help, description=description)
        add_config_args(p, defaults, skip=skip)
        _common(p)
        p.set_defaults(func=func, **fixed)

    experiment("mlp-toy", "Part 1 Tasks 1-2: 2-20-2 MLP on moons/circles/blobs, NumPy and JAX",
               "Part 1 Tasks 1-2: the 2-20-2 MLP on a scikit-learn toy set, in NumPy and/or JAX/Flax. "
               "Defaults are the original's: SGD lr 0.01, 1500 steps, batch 30, eval every 30 steps.",
               mlp_toy.ToyConfig(), cmd_mlp_toy)
    experiment("mlp-cifar", "Part 1 Task 3: the CIFAR-10 MLP (plain or improved)",
               "Part 1 Task 3: MLP 3072-1024-512-256-256-128-10 on CIFAR-10. "
               "Defaults are the original's: AdamW lr 1e-3, 50 epochs, batch 256.",
               cifar.mlp_config(), _cmd_cifar("mlp"), skip=("model",), model="mlp")
    experiment("cnn-cifar", "Part 2: the five-block CNN on CIFAR-10",
               "Part 2: the seed's five-block CNN (3x3 conv + BN + ReLU, 3x3/2 max pool) on CIFAR-10. "
               "Defaults are the original's: AdamW lr 1e-4, 30 epochs, batch 256.",
               cifar.cnn_config(), _cmd_cifar("cnn"), skip=("model", "variant", "hidden", "dropout"),
               model="cnn", variant=None, hidden=None, dropout=None)
    experiment("rnn-palindrome", "Part 3: vanilla RNN (or LSTM) on the palindrome task",
               "Part 3: predict the last digit of a (T+1)-digit palindrome from its first T digits. "
               "Defaults are the original's: RMSprop lr 1e-3, StepLR, clip 10, batch 128, 30 epochs.",
               rnn.RNNConfig(), cmd_rnn)

    p = sub.add_parser("rnn-sweep", help="Part 3: test accuracy against sequence length, over seeds",
                       description="Trains rnn-palindrome for every length, seed and cell; writes "
                                   "<out>/rnn-sweep/sweep.json and accuracy-vs-length and gradient-norm figures.")
    p.add_argument("--lengths", type=_int_list, default=[5, 10, 15, 20, 25, 30],
                   help="comma-separated sequence lengths T (default: 5,10,15,20,25,30)")
    p.add_argument("--seeds", type=int, default=1, help="seeds per length: seed, seed+1, ... (default: 1)")
    p.add_argument("--cells", default="vanilla", help="comma-separated cells: vanilla, lstm (default: vanilla)")
    add_config_args(p, rnn.RNNConfig(), skip=("input_length", "cell"))
    _common(p)
    p.set_defaults(func=cmd_rnn_sweep)

    from train import bench, report
    report.add_parser(sub, _common)
    bench.add_parser(sub)
    return parser


def enable_compilation_cache() -> None:
    """JAX's persistent compilation cache, on by default: a rerun loads its XLA programs from disk.

    $JAX_COMPILATION_CACHE_DIR picks the folder (default ~/.cache/jax_curriculum/xla); set it
    to an empty string to turn the cache off. Every program is cached, however small: the toy
    run's are all below JAX's default 1 s threshold, yet together take ~1.5 s to compile.
    """
    import jax

    path = os.environ.get("JAX_COMPILATION_CACHE_DIR",
                          str(Path(os.environ.get("JAX_CURRICULUM_CACHE", Path.home() / ".cache" / "jax_curriculum")) / "xla"))
    if not path:
        return
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


def check_jax_backend() -> None:
    """A backend JAX cannot start (JAX_PLATFORMS=cuda without a GPU or its plugin) is one line, not 50."""
    import jax
    try:
        jax.devices()
    except (RuntimeError, AssertionError) as e:
        detail = str(e).splitlines()[0][:200] if str(e) else "no detail given"
        raise UsageError(f"JAX could not start a backend (JAX_PLATFORMS={os.environ.get('JAX_PLATFORMS') or 'unset'}: "
                         f"{type(e).__name__}: {detail}); check JAX_PLATFORMS, and for a GPU its driver and "
                         f"jax's CUDA plugin") from None


def describe_os_error(e: OSError) -> str:
    """'<path>: <cause>' for an I/O error (a full disk, a permission), else the error's own text."""
    if e.filename and e.strerror:
        return f"{e.filename}: {e.strerror}"
    return str(e)


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 done; 1 an I/O error (full disk, permissions); 2 bad input; 3 diverged;
    130 / 143 stopped by Ctrl-C / SIGTERM after saving a checkpoint."""
    parser = build_parser()
    args = parser.parse_args(argv)
    enable_compilation_cache()
    from data.errors import DataError
    from train.loop import Diverged, Interrupted
    debug = bool(os.environ.get("JAX_CURRICULUM_DEBUG"))
    try:
        init_distributed(args)
        check_jax_backend()
        return args.func(args)
    except Interrupted as e:
        print(str(e), file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted (no checkpoint saved)", file=sys.stderr)
        return 130
    except Diverged as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except (UsageError, DataError) as e:
        if debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        if debug:
            raise
        print(f"error: {describe_os_error(e)}", file=sys.stderr)
        return 1
