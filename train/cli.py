"""Command line: ``python -m train <experiment> [flags]``.

Each experiment comes from the registry (train/experiments/registry.py): its
config dataclass's fields are the flags, and ``--quick`` swaps in the
experiment's tiny smoke-test defaults. Bad input
is reported as one line on stderr with exit code 2, never a traceback
(set JAX_CURRICULUM_DEBUG=1 to see one).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


from data.errors import DataError
from train import runtime
from train.experiments import registry
from train.engine.loop import Diverged, Interrupted, command_hint, resumable_as
from train.errors import UsageError


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (plus exit code 2) instead of the whole usage block."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="results", help="results root; runs go to <out>/<experiment>/<run-name>/ (default: results)")
    p.add_argument("--quick", action="store_true", help="tiny smoke-test variant of the experiment's defaults")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in its run folder from its latest checkpoint (same flags as the original run)")
    p.add_argument("--checkpoint-every", type=int, default=None, metavar="N",
                   help="save a checkpoint every N evaluation periods, waiting for the disk if needed (default: "
                        "every epoch for which the background writer is free, so training never waits for it; off for "
                        "mlp-toy, whose whole run is shorter than saving its state); 0 turns checkpoints off")
    g = p.add_argument_group("multi-process (several hosts); each flag also reads the environment variable named")
    g.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                   help="address of process 0's coordinator service (JAX_COORDINATOR_ADDRESS)")
    g.add_argument("--num-processes", type=int, default=None, help="processes in the job (JAX_NUM_PROCESSES)")
    g.add_argument("--process-id", type=int, default=None, help="this process's index, 0-based (JAX_PROCESS_ID)")
    g.add_argument("--distributed", action="store_true",
                   help="join a job whose settings a cluster launcher provides (SLURM, Open MPI, ...): "
                        "jax.distributed.initialize() detects them (JAX_DISTRIBUTED=1)")


def _artifacts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default=None, metavar="DIR",
                   help="trace one steady-state period (the second this process trains) with the JAX profiler "
                        "into DIR/<experiment>/<run-name>/ (open in ui.perfetto.dev or TensorBoard's profile plugin)")
    p.add_argument("--dump-hlo", default=None, metavar="DIR",
                   help="write each compiled training and evaluation program's optimised HLO to "
                        "DIR/<experiment>/<run-name>/<program>.hlo.txt")


def cmd_experiment(args) -> int:
    """Any experiment of the registry: its defaults (or --quick variant) overridden by the flags given."""

    e = args.experiment
    given = {f.name: getattr(args, f.name) for f in registry.settings(e) if getattr(args, f.name, None) is not None}
    main = registry.main_for(e, getattr(args, "seeds_k", None))  # a bad --seeds fails before anything is read
    cfg = registry.make_config(e, given, quick=args.quick)
    main(cfg, Path(args.out), **registry.loop_settings(e, progress=False if args.no_progress else None,
                                                       resume=args.resume, checkpoint_every=args.checkpoint_every))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from train import bench, report  # imported here: report imports the experiments, bench is large
    from train.analysis import compare

    parser = OneLineParser(prog="python -m train", description=(
        "JAX/Flax reimplementation of a three-part deep-learning assignment, with a NumPy baseline. "
        "Each command trains one experiment and writes config.json, metrics.jsonl, summary.json "
        "and figures under <out>/<experiment>/<run-name>/."))
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    sub.required = True
    for e in registry.EXPERIMENTS.values():
        p = sub.add_parser(e.name, help=e.help, description=e.description)
        registry.add_flags(p, e)
        if e.main_seeds is not None:
            p.add_argument("--seeds", dest="seeds_k", type=int, default=None, metavar="K",
                           help="train seeds seed, seed+1, ..., seed+K-1, each its own run folder (as --seed alone "
                                "writes it); JAX trains them side by side in one program on one device "
                                "(default: 1)")
        _common(p)
        _artifacts(p)
        p.set_defaults(func=cmd_experiment, experiment=e)
    report.add_parser(sub, _common)
    compare.add_parser(sub)
    bench.add_parser(sub)
    return parser


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
    debug = bool(os.environ.get("JAX_CURRICULUM_DEBUG"))
    try:
        dist = {k: getattr(args, k, None) for k in ("coordinator", "num_processes", "process_id")}
        with runtime.session(profile=getattr(args, "profile", None), dump_hlo=getattr(args, "dump_hlo", None),
                             distributed=getattr(args, "distributed", False), **dist), \
                resumable_as(command_hint(sys.argv[1:] if argv is None else argv)):
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
