"""The GPU window in one command: the plan (scripts/device_plan.py) printed, then its steps in order,
each under its own timeout, the tar rewritten after each so that whatever ran comes back.

    python scripts/device_run.py {all,check,bench,report,tests,plan,pack} [--dry-run] [--steps N,M,...] [OUTDIR]

Driven by scripts/device_run.sh (see its --help). Standard library only: it starts before any
framework is imported.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tarfile
import io
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import device_plan as P  # noqa: E402

STAGES = ("all", "check", "bench", "report", "tests", "plan", "pack")
MAX_RETURN = 15 * 2**20          # the device returns files up to 16 MiB
MAX_MEMBER = 4 * 2**20           # a profile or HLO file above this stays behind (named in left-out.txt)
HEAVY = ("profile", "hlo")       # dropped whole if the tar is still too large
GRACE_S = 10                     # after SIGINT (a run checkpoints and stops), before SIGKILL
SLACK, PAD_S = 1.5, 15           # a planned step may run SLACK times its estimate + PAD_S, if later ones keep theirs
TAR = "device.tar.gz"


def usage(msg: str) -> int:
    print(f"error: {msg} (see scripts/device_run.sh --help)", file=sys.stderr)
    return 2


def pack_cifar(src: Path, dest: Path) -> int:
    """The archive the device needs: the CIFAR-10 JPEG folder as one gzip tar (60,000 small files
    travel badly)."""
    if not (src / "train").is_dir() or not (src / "test").is_dir():
        return usage(f"no CIFAR-10 folder at {src} (set CIFAR_SRC)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    subprocess.run(["tar", "czf", str(tmp), "-C", str(src.parent), src.name], check=True)
    os.replace(tmp, dest)
    print(f"wrote {dest} ({dest.stat().st_size / 2**20:.1f} MiB); carry it: run(carry=['data/{dest.name}'])")
    return 0


def _keep(left_out: list[str], drop_heavy: bool):
    def keep(info: tarfile.TarInfo):
        parts = Path(info.name).parts
        if "checkpoints" in parts or info.name.endswith((".npz", ".part")):
            return None
        heavy = any(h in parts for h in HEAVY)
        if heavy and (drop_heavy or (info.isfile() and info.size > MAX_MEMBER)):
            left_out.append(f"{info.name} ({info.size} bytes)")
            return None
        return info
    return keep


def write_tar(work: Path, out: Path) -> int:
    """Replace OUT/device.tar.gz atomically with the work folder as it is; profiles and HLO dumps
    trimmed so that it stays under the return limit. Its size in bytes."""
    tmp = out / (TAR + ".part")
    for drop_heavy in (False, True):
        left_out: list[str] = []
        with tarfile.open(tmp, "w:gz") as t:
            t.add(work, arcname=".", filter=_keep(left_out, drop_heavy))
            if left_out:
                data = "\n".join(left_out).encode() + b"\n"
                info = tarfile.TarInfo("./left-out.txt")
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
        if tmp.stat().st_size <= MAX_RETURN:
            break
    os.replace(tmp, out / TAR)
    return (out / TAR).stat().st_size


def run_step(step: P.Step, limit: float, log_path: Path, env: dict) -> tuple[int, float, bool]:
    """Run one step in its own session (an interrupt reaches its children); SIGINT at ``limit``
    seconds, SIGKILL after a grace. (exit code, seconds, whether it was interrupted)."""
    t0 = time.monotonic()
    with open(log_path, "w") as log:
        p = subprocess.Popen(step.argv, stdout=log, stderr=subprocess.STDOUT, cwd=P.ROOT, env=env,
                             start_new_session=True)
        try:
            return p.wait(timeout=max(limit, 1)), time.monotonic() - t0, False
        except subprocess.TimeoutExpired:
            for sig, wait in ((signal.SIGINT, GRACE_S), (signal.SIGKILL, None)):
                try:
                    os.killpg(p.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    p.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
            return p.wait(), time.monotonic() - t0, True


def limit_for(i: int, plan: list[P.Step], planned: list[P.Step], left: float, dry: bool) -> float:
    """Seconds step ``i`` may run: a planned one up to SLACK times its estimate, an unplanned one only
    if it fits; either way never into the time the planned steps after it were given. 0: skip it."""
    step = plan[i]
    if dry:   # a CPU runs the tiny steps at its own pace; the GPU plan's clock does not apply
        return 900.0
    later = sum(s.estimate.seconds for s in plan[i + 1:] if s in planned)
    room = left - later
    if step in planned:
        return min(step.estimate.seconds * SLACK + PAD_S, room) if room >= min(10.0, step.estimate.seconds) else 0.0
    return room if room >= step.estimate.seconds else 0.0


def child_env(dry: bool) -> dict:
    tmp = Path(os.environ.get("TMPDIR", tempfile.gettempdir()))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
           # One JAX persistent cache and one inductor cache for every step of the window.
           "JAX_CURRICULUM_CACHE": os.environ.get("JAX_CURRICULUM_CACHE", str(tmp / "jax_curriculum_device")),
           "TORCHINDUCTOR_CACHE_DIR": os.environ.get("TORCHINDUCTOR_CACHE_DIR", str(tmp / "torchinductor_device"))}
    env["PYTHONPATH"] = str(P.ROOT) + (":" + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")
    return env


def cifar_data(dry: bool) -> str:
    """--data for the report: the carried archive unpacked, else data/cifar10-jpg, else synthetic."""
    if dry:
        return "synthetic:512"
    folder = P.ROOT / "data" / "cifar10-jpg"
    archive = P.ROOT / "data" / "cifar10-jpg.tar.gz"
    if not (folder / "train").is_dir() and archive.is_file():
        unpacked = Path(os.environ.get("TMPDIR", tempfile.gettempdir())) / "jax_curriculum_cifar"
        if not (unpacked / "cifar10-jpg" / "test").is_dir():
            unpacked.mkdir(parents=True, exist_ok=True)
            if subprocess.run(["tar", "xzf", str(archive), "-C", str(unpacked)]).returncode:
                print("warning: could not unpack data/cifar10-jpg.tar.gz", file=sys.stderr)
        folder = unpacked / "cifar10-jpg"
    if (folder / "train").is_dir() and (folder / "test").is_dir():
        return f"folder:{folder}"
    print("warning: no CIFAR-10 (carry data/cifar10-jpg.tar.gz, made by `scripts/device_run.sh pack`); "
          "the report runs on synthetic data and says so", file=sys.stderr)
    return "synthetic:512"


def run_plan(plan: list[P.Step], work: Path, out: Path, dry: bool, budget: float = P.PLAN_S) -> int:
    """Every step in order under its limit; after each, device.log and the tar rewritten in OUT."""
    t0, planned, env = time.monotonic(), P.fit(plan, budget), child_env(dry)
    (work / "logs").mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    log_file = work / "device.log"

    def say(line: str) -> None:
        print(line, flush=True)
        with open(log_file, "a") as f:
            f.write(line + "\n")

    say(P.describe(plan, budget))
    failed = []
    for i, step in enumerate(plan):
        limit = limit_for(i, plan, planned, budget - (time.monotonic() - t0), dry)
        if limit <= 0:
            say(f"== {step.name}: skipped, no time left (at {time.monotonic() - t0:.0f} s)")
            failed += [f"{step.name} (no time)"] if step in planned else []
            continue
        say(f"== {step.name} (up to {limit:.0f} s, estimate {step.estimate.seconds:.0f} s): {' '.join(step.argv)[:300].replace(chr(10), '; ')}")
        step_log = work / "logs" / f"{i + 1:02d}-{step.name.split(' (')[0].replace(' ', '-').replace(',', '+')}.log"
        rc, took, cut = run_step(step, limit, step_log, env)
        tail = step_log.read_text(errors="replace").strip().splitlines()[-3:]
        if tail:
            say("\n".join(f"   | {t[:200]}" for t in tail))
        say(f"== {step.name}: exit {rc} after {took:.0f} s{' (interrupted at its limit)' if cut else ''}; "
            f"at {time.monotonic() - t0:.0f} s")
        if rc:
            failed.append(f"{step.name} (exit {rc})")
        (work / "failed.txt").write_text("".join(f + "\n" for f in failed))
        size = write_tar(work, out)
        say(f"== wrote {out / TAR} ({size / 2**20:.2f} MiB)")
        shutil.copy(log_file, out / "device.log")
    say(f"== done in {time.monotonic() - t0:.0f} s; failed: {', '.join(failed) or 'none'}")
    write_tar(work, out)
    shutil.copy(log_file, out / "device.log")
    return 1 if failed else 0


def parse_steps(text: str, n: int) -> list[int] | None:
    """--steps N,M,...: 1-based step numbers as `plan` prints them; None if any is not one."""
    try:
        chosen = [int(x) for x in text.split(",")]
    except ValueError:
        return None
    return chosen if chosen and all(1 <= i <= n for i in chosen) else None


def main(argv: list[str]) -> int:
    stage, dry, outdir, only = None, False, os.environ.get("OUT") or "", None
    for a in argv:
        if a in STAGES:
            stage = a
        elif a == "--dry-run":
            dry = True
        elif a.startswith("--steps="):
            only = a.split("=", 1)[1]
        elif a.startswith("-"):
            return usage(f"unknown option {a}")
        else:
            outdir = a
    if stage is None:
        return usage(f"give a stage: {', '.join(STAGES)}")
    if stage == "pack":
        src = Path(os.environ.get("CIFAR_SRC", P.ROOT.parent / "shared" / "datasets" / "cifar10-jpg"))
        return pack_cifar(src, P.ROOT / "data" / "cifar10-jpg.tar.gz")
    py = os.environ.get("PYTHON") or sys.executable
    chosen = None
    if only is not None:
        n = len(P.steps(py, Path("."), "synthetic:512", dry))
        chosen = parse_steps(only, n)
        if chosen is None:
            return usage(f"--steps={only}: give step numbers from 1 to {n} (see `plan`), comma-separated")
    out = Path(outdir or P.ROOT / "results" / "device-run")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return usage(f"cannot create {out}: {e.strerror}")
    work = Path(tempfile.mkdtemp(prefix="device-run-")) / "run"
    plan = P.steps(py, work, "synthetic:512" if stage == "plan" else cifar_data(dry), dry)
    if stage == "plan":
        print(P.describe(plan))
        return 0
    if chosen is not None:
        plan = [s for i, s in enumerate(plan, 1) if i in chosen]
    if stage != "all":
        plan = [s for s in plan if s.stage == stage]
    return run_plan(plan, work, out.resolve(), dry)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
