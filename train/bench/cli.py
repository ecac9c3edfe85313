"""``python -m train bench``'s flags (``add_parser``) and entry point (``cmd``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

from train.bench.records import (DEFAULT_MODES, FRAMEWORKS, LEGACY_MODES, MODES, PARALLEL_MODES, PRECISIONS,
                                 TORCH_CANDIDATES, TORCH_MODES)
from train.bench.suites import SUITES, unknown_suite
from train.bench.whole_run import WHOLE_RUN_STEPS
from train.errors import UsageError


def _csv(choices: Sequence[str] | None = None):
    def parse(text: str) -> list[str]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        if choices is not None:
            bad = [t for t in items if t not in choices]
            if bad:
                raise argparse.ArgumentTypeError(f"{', '.join(bad)} not among {', '.join(choices)}")
        if not items:
            raise argparse.ArgumentTypeError("empty list")
        return items
    return parse


def _modes(text: str) -> list[str]:
    """``--modes``, an earlier name ("compiled") standing for the candidates it meant."""
    items = _csv((*MODES, *LEGACY_MODES))(text)
    return list(dict.fromkeys(m for t in items for m in LEGACY_MODES.get(t, (t,))))


COMPILE_POLICIES = ("auto", "on", "recipe-bf16", "off")
COMPILED = tuple(m for m, c in TORCH_CANDIDATES.items() if c.compile_mode)


def _compile_policy(text: str) -> list[tuple[str | None, str]]:
    """``--torch-compile``: ``"recipe-bf16,compile-cudagraphs:on"`` -> ``[(None, "recipe-bf16"),
    ("compile-cudagraphs", "on")]``, a policy for every compiled candidate or for one."""
    out = []
    for tok in _csv()(text):
        cand, _, policy = tok.rpartition(":")
        if policy not in COMPILE_POLICIES or (cand and cand not in COMPILED):
            raise argparse.ArgumentTypeError(
                f"in {tok!r}: expected POLICY or CANDIDATE:POLICY, policies {', '.join(COMPILE_POLICIES)}, "
                f"compiled candidates {', '.join(COMPILED)}")
        out.append((cand or None, policy))
    return out


def _int_csv(text: str) -> list[int]:
    try:
        vals = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}") from None
    if not vals or any(v < 1 for v in vals):
        raise argparse.ArgumentTypeError(f"device counts must be positive, got {text!r}")
    return vals


def _suites(text: str) -> list[str]:
    """``--suite``: experiment names; an old suite name (``cnn``) is an error naming the new one."""
    items = _csv()(text)
    bad = [t for t in items if t not in SUITES]
    if bad:
        raise argparse.ArgumentTypeError(unknown_suite(bad[0]))
    return items


def _per_suite(value: Callable[[str], Any], what: str):
    """Parser of ``--batch-sizes`` and ``--precision``: ``"256,cnn-cifar:1024"`` -> ``[(None, 256),
    ("cnn-cifar", 1024)]``, each item for every suite or for one; ``value`` converts an item's
    value, None if it is not one."""
    def parse(text: str) -> list[tuple[str | None, Any]]:
        out = []
        for tok in (t.strip() for t in text.split(",") if t.strip()):
            suite, _, v = tok.rpartition(":")
            if suite and suite not in SUITES:
                raise argparse.ArgumentTypeError(f"in {tok!r}: {unknown_suite(suite)}")
            if value(v) is None:
                raise argparse.ArgumentTypeError(f"{what}, got {tok!r}")
            out.append((suite or None, value(v)))
        if not out:
            raise argparse.ArgumentTypeError("empty list")
        return out
    return parse


batch_sizes = _per_suite(lambda v: int(v) if v.isdigit() and int(v) > 0 else None,
                         "batch sizes must be positive integers")
precisions = _per_suite(lambda v: v if v in (*PRECISIONS, "auto") else None,
                        f"precisions are {', '.join(PRECISIONS)} or auto")


def add_parser(subparsers) -> None:
    """Register ``bench`` on the CLI's sub-parsers."""
    p = subparsers.add_parser(
        "bench", help="training-step speed: NumPy vs JAX (step loop, fused, pmap) vs PyTorch",
        description="Times compile and steady-state training steps of each model in NumPy, JAX "
                    "and PyTorch and writes <out>/bench/bench.json, bench.md and bench.png. For N "
                    "simulated CPU devices start the process with "
                    "XLA_FLAGS=--xla_force_host_platform_device_count=N.")
    _add_selection(p)
    _add_sizes(p)
    _add_outputs(p)
    p.set_defaults(func=cmd)


def _add_selection(p) -> None:
    p.add_argument("--suite", type=_suites, default=list(SUITES),
                   help=f"comma-separated suites, the experiments' names: {', '.join(SUITES)} "
                        f"(default: all)")
    p.add_argument("--frameworks", type=_csv(FRAMEWORKS), default=list(FRAMEWORKS),
                   help="comma-separated frameworks from numpy, jax, torch (default: all; torch is "
                        "skipped with a note when not installed)")
    p.add_argument("--modes", type=_modes, default=list(DEFAULT_MODES),
                   help=f"comma-separated modes from {', '.join(MODES)} (default: all but the "
                        f"fused-cb-* GPU variants and the shard_map and jit paths, see --parallel). The "
                        f"PyTorch ones ({', '.join(TORCH_MODES)}) are its candidates: best "
                        f"PyTorch is the fastest that ran; nn.RNN-* only for the RNN; 'compiled' "
                        f"(earlier runs) is compile,compile-cudagraphs")
    p.add_argument("--devices", type=_int_csv, default=None,
                   help="comma-separated device counts for the data-parallel modes, e.g. 1,2,4 "
                        "(default: 1 and all local devices)")
    p.add_argument("--parallel", type=_csv(PARALLEL_MODES), default=None,
                   help=f"comma-separated data-parallel paths to time on each --devices count, each "
                        f"a mode of its name: {', '.join(PARALLEL_MODES)} (jit: the global program "
                        f"partitioned by XLA; plain single-device jit is the fused mode); given, "
                        f"they replace those --modes names (default: pmap)")
    p.add_argument("--scaling", type=_csv(("strong", "weak")), default=["strong", "weak"],
                   help="with several --devices: strong scaling (the global batch split over N "
                        "devices) and/or weak (N times the batch on N devices); on a CPU with fewer "
                        "devices, the pmap records run in a child process with simulated devices "
                        "(default: strong,weak)")
    p.add_argument("--precision", type=precisions, default=[(None, "auto")],
                   help="comma-separated fp32 (full fp32), tf32 (fp32 with TF32 matmuls and "
                        "convolutions on a GPU), bf16, or auto: as for the experiments, bf16 on a "
                        "GPU, fp32 on CPU (where tf32 computes what fp32 does and bf16 is "
                        "emulated); each for every suite, or SUITE:PRECISION for one, e.g. "
                        "tf32,bf16,rnn-palindrome:fp32 (default: auto)")
    p.add_argument("--torch-compile", type=_compile_policy, default=[(None, "auto")],
                   help="for which PyTorch configurations the compiled candidates (compile*, "
                        "nn.RNN-compile*) run: on (all), recipe-bf16 (bf16 at the recipe batch), "
                        "off; auto is recipe-bf16 on a GPU, off under --quick on CPU, else on; "
                        "comma-separated, CANDIDATE:POLICY for one candidate, e.g. "
                        "recipe-bf16,compile-cudagraphs:on (default: auto)")
    p.add_argument("--torch-compile-mode", default=None,
                   choices=("default", "reduce-overhead", "max-autotune",
                            "max-autotune-no-cudagraphs"),
                   help="torch.compile mode of the 'compile' candidate (default: default; the "
                        "other candidates name their own modes)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data and initial weights")


def _add_sizes(p) -> None:
    p.add_argument("--batch-size", type=int, default=None,
                   help="override every selected suite's batch size")
    p.add_argument("--batch-sizes", type=batch_sizes, default=None,
                   help="comma-separated batch sizes to run, each B (every suite) or SUITE:B (that "
                        "suite), e.g. cnn-cifar:256,cnn-cifar:1024,rnn-palindrome:128; a suite with none runs at "
                        "its default batch. The summary reports each configuration at the recipe "
                        "batch and at its best batch")
    p.add_argument("--sweep-precision", type=_csv(PRECISIONS), default=None,
                   help="precisions run at batch sizes other than the recipe's (default: all of "
                        "--precision)")
    p.add_argument("--steps", type=int, default=None,
                   help="override the steps per timed window (K)")
    p.add_argument("--windows", type=int, default=None, help="override the number of timed windows")
    p.add_argument("--warmup", type=int, default=None, help="override the untimed warm-up windows")
    p.add_argument("--whole-run-steps", type=int, default=WHOLE_RUN_STEPS,
                   help=f"steps of the toy whole-run measurement (default: {WHOLE_RUN_STEPS}, the "
                        f"seed's)")
    p.add_argument("--time-budget", type=float, default=None,
                   help="seconds after which no further runner is built or compiled (those left "
                        "out are recorded as skipped), so the run ends about one runner's time "
                        "later; order --suite and --batch-sizes by importance (default: no limit)")
    p.add_argument("--quick", action="store_true",
                   help="fewer, shorter windows and a tiny CPU CNN: under 3 minutes on 2 CPU cores")
    p.add_argument("--compile-cache", action="store_true",
                   help="keep JAX's persistent compilation cache on, as the other commands do: compile "
                        "times then include disk loads (each record's persistent_cache says hit or miss); "
                        "for smoke runs such as scripts/device_run.sh --dry-run (default: off, compiles cold)")


def _add_outputs(p) -> None:
    p.add_argument("--profile", default=None, metavar="DIR",
                   help="after timing, trace one more window of each timed JAX runner with "
                        "jax.profiler into DIR/<suite>-<mode>-<precision>-b<batch>/ (default: off)")
    p.add_argument("--profile-only", type=_csv(), default=["*"], metavar="GLOBS",
                   help="comma-separated patterns of the runs --profile traces, e.g. "
                        "cnn-cifar-fused-bf16-b256,rnn-palindrome-*-b128 (default: all)")
    p.add_argument("--dump-hlo", default=None, metavar="DIR",
                   help="write each compiled JAX runner's optimised HLO to "
                        "DIR/<suite>-<mode>-<precision>-b<batch>.hlo.txt (default: off)")
    p.add_argument("--out", default="results",
                   help="results root; files go to <out>/bench/ (default: results)")


def check_args(args) -> None:
    """Bad combinations of flags, as a :class:`UsageError` naming the flag."""
    for name in ("batch_size", "steps", "windows", "whole_run_steps"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be positive, got {v}")
    if args.time_budget is not None and args.time_budget <= 0:
        raise UsageError(f"--time-budget must be positive, got {args.time_budget:g}")
    if args.batch_size and args.batch_sizes:
        raise UsageError("give --batch-size or --batch-sizes, not both")
    if args.warmup is not None and args.warmup < 0:
        raise UsageError(f"--warmup must be >= 0, got {args.warmup}")


def with_parallel(modes: list[str], parallel: list[str] | None) -> list[str]:
    """``--modes`` with ``--parallel``'s paths as its data-parallel modes (None: as --modes says)."""
    if parallel is None:
        return modes
    return [m for m in modes if m not in PARALLEL_MODES] + list(dict.fromkeys(parallel))


def cmd(args) -> int:
    check_args(args)
    args.modes = with_parallel(args.modes, getattr(args, "parallel", None))
    # The runners and matplotlib load only when bench runs, not whenever the command line builds
    # its parsers.
    from train.bench.run import run

    return run(args)
