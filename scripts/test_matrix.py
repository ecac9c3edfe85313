"""The test suite under settings that change the arithmetic the way another machine does.

    python scripts/test_matrix.py [--only NAME,...] [--out FILE] [-- PYTEST ARGS]   (make test-matrix)

Each setting runs `make test`'s pytest command with its environment; the table of pass counts and
times goes to stdout and to --out (Markdown). The exit code is non-zero if any setting failed.
Each row also says which of a few probe computations (XLA, NumPy and PyTorch kernels) give other bits
under the setting than under `threads-1`: the evidence that the setting changes this machine's
arithmetic, and where.
A setting whose change this CPU cannot show (an ISA cap at or above what the CPU has) is skipped
with the reason, rather than reported as a pass that proved nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTEST = ["-m", "pytest", "-n", "2", "--dist", "loadgroup", "--no-loadscope-reorder", "-q", "-p", "no:cacheprovider"]
_THREADS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
_OLD_ISA = {"ONEDNN_MAX_CPU_ISA": "SSE41", "DNNL_MAX_CPU_ISA": "SSE41",   # PyTorch's convolutions
            "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "MKL_CBWR": "COMPATIBLE",   # PyTorch's matmuls
            "OPENBLAS_CORETYPE": "Nehalem"}                                   # NumPy's matmuls

# name -> (what it changes, environment, CPU flag it needs to change anything or None).
# `--xla_cpu_multi_thread_eigen` is what tests/conftest.py keys on: a setting that names it keeps its
# own thread counts instead of the one thread per xdist worker that `make test` uses.
SETTINGS = {
    "threads-1": ("one compute thread per worker (what `make test` runs)",
                  {**dict.fromkeys(_THREADS, "1"), "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false"}, None),
    "threads-2": ("two compute threads per worker: XLA's multi-threaded Eigen, PyTorch/MKL/OpenBLAS x2",
                  {**dict.fromkeys(_THREADS, "2"), "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=true"}, None),
    "isa-avx2": ("every library capped at AVX2 (an AVX-512 machine's other path)",
                 {"ONEDNN_MAX_CPU_ISA": "AVX2", "DNNL_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
                  "XLA_FLAGS": "--xla_cpu_max_isa=AVX2"}, "avx512f"),
    "isa-sse4": ("every library capped at SSE4 (no AVX, no FMA: other kernels, other rounding)",
                 {**_OLD_ISA, "XLA_FLAGS": "--xla_cpu_max_isa=SSE4_2"}, "avx"),
    "xla-fast-math": ("XLA CPU fast math (reassociation, reciprocal approximations; NaN/inf honoured)",
                      {"XLA_FLAGS": "--xla_cpu_enable_fast_math=true"}, None),
}


def environment(name: str) -> dict[str, str]:
    """A setting's variables on top of `threads-1`'s, XLA flags joined, so each row changes one thing."""
    base, own = SETTINGS["threads-1"][1], SETTINGS[name][1]
    threading = "xla_cpu_multi_thread_eigen" in own["XLA_FLAGS"]
    return {**base, **own, "XLA_FLAGS": own["XLA_FLAGS"] if threading else f"{base['XLA_FLAGS']} {own['XLA_FLAGS']}"}


def probe() -> dict[str, str]:
    """A digest of each of a few float32 computations, as this process's settings compute them."""
    import hashlib

    import numpy as np
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((257, 301), np.float32), rng.standard_normal((301, 129), np.float32)
    x, w = rng.standard_normal((8, 17, 17, 16), np.float32), rng.standard_normal((3, 3, 16, 32), np.float32)
    import jax
    import jax.numpy as jnp
    conv = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    out = {"xla matmul": a @ jnp.asarray(b), "xla conv": conv, "xla tanh": jnp.tanh(a),
           "xla exp-sum": jnp.exp(jnp.asarray(a)).sum(1), "numpy matmul": a @ b}
    from train.backends.torch_backend import import_torch
    torch = import_torch()
    if torch is not None:
        out["torch matmul"] = torch.from_numpy(a) @ torch.from_numpy(b)
        out["torch conv"] = torch.nn.functional.conv2d(torch.from_numpy(x).permute(0, 3, 1, 2),
                                                       torch.from_numpy(w).permute(3, 2, 0, 1), padding=1)
    return {k: hashlib.sha256(np.ascontiguousarray(np.asarray(v)).tobytes()).hexdigest()[:12] for k, v in out.items()}


def probe_under(env: dict) -> dict[str, str]:
    p = subprocess.run([sys.executable, __file__, "--probe"], cwd=ROOT, env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
                       capture_output=True, text=True, check=True)
    return json.loads(p.stdout.splitlines()[-1])


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    m = re.search(r"^flags\s*:(.*)$", text, re.M)
    return set(m.group(1).split()) if m else set()


def counts(output: str) -> str:
    """pytest's last summary line, e.g. '322 passed, 2 skipped in 201.3s', without the time."""
    lines = [ln for ln in output.splitlines() if re.search(r"\d+ (passed|failed|error)", ln)]
    return re.sub(r"\s+in [\d.]+s.*$", "", lines[-1].strip("= ")) if lines else "no summary (crashed?)"


def run_setting(name: str, env: dict, pytest_args: list[str], log_dir: Path) -> tuple[int, str, float]:
    full = {**os.environ, **env}
    t = time.perf_counter()
    p = subprocess.run([sys.executable, *PYTEST, *pytest_args], cwd=ROOT, env=full, capture_output=True, text=True)
    wall = time.perf_counter() - t
    (log_dir / f"{name}.log").write_text(p.stdout + p.stderr)
    return p.returncode, counts(p.stdout), wall


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", help=f"comma-separated settings (default: all of {', '.join(SETTINGS)})")
    ap.add_argument("--out", default=".cache/test-matrix/matrix.md", help="Markdown table (logs beside it)")
    ap.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("pytest_args", nargs="*", help="extra pytest arguments, after --")
    args = ap.parse_args(argv)
    if args.probe:
        print(json.dumps(probe()))
        return 0
    names = args.only.split(",") if args.only else list(SETTINGS)
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        ap.error(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(SETTINGS)}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    flags, failed = cpu_flags(), False
    base = probe_under(environment("threads-1"))
    rows = ["| setting | what changes | environment | other bits than threads-1 in | result | wall |",
            "|---|---|---|---|---|--:|"]
    for name in names:
        what, own, needs = SETTINGS[name]
        shown, env = " ".join(f"`{k}={v}`" for k, v in own.items()), environment(name)
        if needs and flags and needs not in flags:
            rows.append(f"| {name} | {what} | {shown} | - | skipped: this CPU has no {needs}, so the cap "
                        f"changes nothing | - |")
        else:
            changed = [k for k, v in probe_under(env).items() if base.get(k) != v]
            code, summary, wall = run_setting(name, env, args.pytest_args, out.parent)
            failed |= code != 0
            rows.append(f"| {name} | {what} | {shown} | {', '.join(changed) or 'none'} | "
                        f"{summary}{'' if code == 0 else ' (FAILED)'} | {wall:.0f} s |")
        print(rows[-1], flush=True)
    cpu = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text()) if Path("/proc/cpuinfo").exists() else None
    table = f"CPU: {cpu.group(1) if cpu else 'unknown'}, {os.cpu_count()} cores\n\n" + "\n".join(rows) + "\n"
    out.write_text(table)
    print(f"\n{table}\nwritten to {out} (logs beside it)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
