"""``bench --devices 1,2,4``: data-parallel scaling, strong and weak, on real or simulated devices.

Strong scaling splits the suite's global batch b over N devices; weak scaling gives each of N
devices b / 1 examples, i.e. a global batch of N*b (:func:`weak_batches`). On a CPU with fewer
local devices than asked for, the data-parallel records (every path of ``--parallel``) run in one
child process started with ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` (the flag must be
set before JAX starts), and its records join this run's (:func:`pmap_in_child`); on a GPU machine
the real devices are used.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import jax

from train.bench.records import PARALLEL_MODES, Record

# More simulated CPU devices than this is not a measurement of anything on a small machine: such
# counts stay skipped with the note that says how to simulate them by hand.
MAX_SIMULATED = 8
FORCE_FLAG = "--xla_force_host_platform_device_count"


def weak_batches(batch: int, devices: Sequence[int]) -> list[tuple[int, int]]:
    """(global batch, devices) of the weak-scaling points beyond one device."""
    return [(n * batch, n) for n in devices if n > 1]


def child_devices(args, devices: Sequence[int]) -> int:
    """How many simulated devices a child process needs for the data-parallel records (0: none needed)."""
    want = max(devices, default=1)
    if (not set(PARALLEL_MODES) & set(args.modes) or "jax" not in args.frameworks
            or jax.devices()[0].platform != "cpu" or want <= jax.local_device_count()
            or want > MAX_SIMULATED or FORCE_FLAG in os.environ.get("XLA_FLAGS", "")):
        return 0
    return want


def _per_suite_text(items) -> str:
    return ",".join(f"{s}:{v}" if s else str(v) for s, v in items)


def child_argv(args, spec, devices: Sequence[int], out: str) -> list[str]:
    """The same suites, precisions, batch sizes and windows, data-parallel records only."""
    modes = ",".join(m for m in PARALLEL_MODES if m in args.modes)
    argv = ["bench", "--suite", ",".join(args.suite), "--frameworks", "jax", "--modes", modes,
            "--devices", ",".join(map(str, devices)), "--precision", _per_suite_text(args.precision),
            "--scaling", ",".join(args.scaling), "--seed", str(args.seed), "--out", out]
    if spec:
        argv += ["--batch-sizes", _per_suite_text(spec)]
    if args.sweep_precision:
        argv += ["--sweep-precision", ",".join(args.sweep_precision)]
    for flag in ("steps", "windows", "warmup"):
        if getattr(args, flag) is not None:
            argv += [f"--{flag}", str(getattr(args, flag))]
    if args.profile:
        argv += ["--profile", args.profile, "--profile-only", ",".join(args.profile_only)]
    if args.dump_hlo:
        argv += ["--dump-hlo", args.dump_hlo]
    return argv + (["--quick"] if args.quick else []) + (["--compile-cache"] if args.compile_cache else [])


def pmap_in_child(args, spec, devices: Sequence[int], n_sim: int, log=print) -> list[Record]:
    """Run the data-parallel records in a child process with ``n_sim`` simulated CPU devices; its
    records, each noting where it ran."""
    with tempfile.TemporaryDirectory(prefix="bench-pmap-") as out:
        env = {**os.environ,
               "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} {FORCE_FLAG}={n_sim}".strip()}
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        log(f"bench: {', '.join(m for m in PARALLEL_MODES if m in args.modes)} on "
            f"{','.join(map(str, devices))} simulated CPU devices, in a child "
            f"process ({FORCE_FLAG}={n_sim})")
        proc = subprocess.run([sys.executable, "-m", "train", *child_argv(args, spec, devices, out)],
                              env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"the data-parallel child process failed: {tail}")
        doc = json.loads((Path(out) / "bench" / "bench.json").read_text())
    names = {f.name for f in dataclasses.fields(Record)}
    recs = [Record(**{k: v for k, v in r.items() if k in names}) for r in doc["records"]]
    for r in recs:
        r.extra["process"] = f"child process, {n_sim} simulated CPU devices"
    return recs


def merge(records: list[Record], extra: list[Record]) -> list[Record]:
    """``extra`` records placed after the last record of their suite (else at the end)."""
    out = list(records)
    for r in extra:
        last = max((i for i, x in enumerate(out) if x.suite == r.suite), default=len(out) - 1)
        out.insert(last + 1, r)
    return out
