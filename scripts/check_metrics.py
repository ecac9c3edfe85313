"""Are the metrics of a fixed set of small runs identical here and at another commit?

    python scripts/check_metrics.py --base REF [--only NAME] [--keep DIR]

Checks REF out into a temporary git worktree, runs the same small runs there and in this working
tree (each `python -m train ...` in a subprocess, into its own fresh --out folder), and compares
every metrics.jsonl row by row: every key but EXCLUDED, exact equality of the parsed JSON values.
One line per run folder; the exit code is 1 if any differs or is missing, 0 otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Rows hold step, epoch, split, loss, accuracy and time_s. time_s is the wall-clock seconds since the
# run started, the one key that differs from run to run of the same code; every other key is compared.
EXCLUDED = frozenset({"time_s"})
QUICK = ["--quick", "--devices", "1"]  # every run on one device but the data-parallel one
# name -> (arguments after `python -m train`, extra environment). `--framework all` runs every
# framework the experiment has (same initial weights and batches), each into its own run folder.
RUNS = {
    "mlp-toy": (["mlp-toy", *QUICK, "--framework", "all"], {}),
    "mlp-cifar-plain": (["mlp-cifar", *QUICK, "--framework", "all", "--data", "synthetic:512",
                         "--limit-test", "256", "--eval-batch", "256"], {}),
    "mlp-cifar-improved": (["mlp-cifar", *QUICK, "--variant", "improved", "--framework", "all",
                            "--data", "synthetic:512", "--limit-test", "256", "--eval-batch", "256"], {}),
    # 2 epochs of 2 steps of 8 images: the CNN's convolutions are by far the slowest step on a CPU.
    "cnn-cifar": (["cnn-cifar", *QUICK, "--framework", "all", "--data", "synthetic:16", "--batch-size", "8",
                   "--epochs", "2", "--eval-batch", "16"], {}),
    "rnn-vanilla": (["rnn-palindrome", *QUICK, "--framework", "all"], {}),
    "rnn-lstm": (["rnn-palindrome", *QUICK, "--cell", "lstm", "--framework", "jax"], {}),
    # Two seeds of one length, trained together in one vmapped program (single device only).
    "rnn-sweep": (["rnn-sweep", *QUICK, "--seeds", "2", "--lengths", "5"], {}),
    # Data parallel over two host CPU devices (jax.pmap).
    "mlp-cifar-pmap": (["mlp-cifar", "--quick", "--devices", "2", "--framework", "jax", "--data", "synthetic:512",
                        "--limit-test", "256", "--eval-batch", "256"],
                       {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}),
}


def _same(a, b) -> bool:
    """Exact equality of two parsed JSON values, types included (1 is not 1.0); NaN equals NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def first_difference(base: list[dict], work: list[dict], excluded=EXCLUDED):
    """(row index, key, base value, work value) of the first difference, or None if identical."""
    for i, (b, w) in enumerate(zip(base, work)):
        for key in sorted((b.keys() | w.keys()) - excluded):
            missing = "<absent>"
            if not _same(b.get(key, missing), w.get(key, missing)):
                return i, key, b.get(key, missing), w.get(key, missing)
    if len(base) != len(work):
        return min(len(base), len(work)), "<row count>", len(base), len(work)
    return None


def run_all(side: str, tree: Path, out: Path, names: list[str], cache: Path) -> None:
    """Every named run with `tree`'s code, each into out/<name>; a failed run is reported, not fatal."""
    for name in names:
        argv, extra = RUNS[name]
        env = {**os.environ, "PYTHONPATH": str(tree), "JAX_COMPILATION_CACHE_DIR": str(cache)}
        if "XLA_FLAGS" in extra:
            env["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {extra['XLA_FLAGS']}".strip()
        t0 = time.perf_counter()
        p = subprocess.run([sys.executable, "-m", "train", *argv, "--out", str(out / name), "--no-progress"],
                           cwd=tree, env=env, capture_output=True, text=True)
        print(f"  {side:<4} {name:<20} rc={p.returncode} {time.perf_counter() - t0:6.1f} s", flush=True)
        if p.returncode:
            print("    " + "\n    ".join((p.stderr or p.stdout).strip().splitlines()[-5:]), flush=True)


def collect(out: Path) -> dict[str, tuple[str, list[dict]]]:
    """Every metrics.jsonl under `out`: its folder (relative to `out`) -> (framework, parsed rows)."""
    found = {}
    for path in sorted(out.rglob("metrics.jsonl")):
        try:
            fw = json.loads((path.parent / "config.json").read_text()).get("framework", "?")
        except (OSError, ValueError):
            fw = "?"
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        found[str(path.parent.relative_to(out))] = (fw, rows)
    return found


def compare(base_out: Path, work_out: Path, names: list[str]) -> bool:
    """Print one line per run folder found on either side; True if every one is identical."""
    ok = True
    print(f"{'run':<20} {'framework':<9} {'run folder':<40} {'rows':>4}  verdict")
    for name in names:
        base, work = collect(base_out / name), collect(work_out / name)
        if not base and not work:
            base = {"(no metrics.jsonl)": ("?", [])}
        for folder in sorted(base.keys() | work.keys()):
            fw, rows = work.get(folder) or base[folder]
            if folder not in base or folder not in work:
                verdict = f"MISSING in {'base' if folder not in base else 'work'}"
            elif not base[folder][1]:
                verdict = "MISSING (no rows)"
            else:
                diff = first_difference(base[folder][1], rows)
                verdict = "identical" if diff is None else \
                    "DIFFERENT: row {}, key {!r}: base {!r} != work {!r}".format(*diff)
            ok &= verdict == "identical"
            print(f"{name:<20} {fw:<9} {folder:<40} {len(rows):>4}  {verdict}")
    return ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="git commit-ish to compare this working tree against")
    ap.add_argument("--only", default="", help="run only the runs whose name contains this substring")
    ap.add_argument("--keep", help="write the outputs under this folder (kept) instead of a temporary one")
    args = ap.parse_args(argv)
    names = [n for n in RUNS if args.only in n]
    if not names:
        sys.exit(f"error: no run name contains {args.only!r} (runs: {', '.join(RUNS)})")
    if subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{args.base}^{{commit}}"], cwd=ROOT,
                      capture_output=True).returncode:
        sys.exit(f"error: --base {args.base!r} is not a commit of {ROOT}")
    if args.keep and Path(args.keep).exists() and any(Path(args.keep).iterdir()):
        sys.exit(f"error: --keep {args.keep} is not empty (each run needs a fresh --out folder)")
    # A kill (timeout, CI cancel) unwinds like an error, so the temporary worktree is still removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="check_metrics-") as tmp:
        out = Path(args.keep).resolve() if args.keep else Path(tmp) / "out"
        base_tree = Path(tmp) / "tree"  # removed before the comparison: the outputs must lie elsewhere
        subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(base_tree), args.base],
                       cwd=ROOT, check=True)
        try:
            # One compilation cache for both sides: programs that did not change are compiled once.
            run_all("base", base_tree, out / "base", names, Path(tmp) / "xla")
            run_all("work", ROOT, out / "work", names, Path(tmp) / "xla")
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base_tree)], cwd=ROOT)
        ok = compare(out / "base", out / "work", names)
    print(f"{'all identical' if ok else 'DIFFERENCES'} (base {args.base}, {len(names)} runs, "
          f"{time.perf_counter() - t0:.0f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
