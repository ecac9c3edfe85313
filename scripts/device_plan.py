"""The GPU window's plan: its steps, most valuable first, each with a time estimate read from the
last GPU run's files (results/reference-gpu/), or "no record" and a stated conservative figure.

Estimates are cold: the reference machine was bare (empty JAX and inductor caches), as the next one
will be, so each first compile is in them. Within the window the steps share one JAX persistent
cache and one inductor cache (scripts/device_run.py), so a program compiled once (an MLP's further
seeds, the report's re-renders) is not compiled again; the estimates count it once.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REF = ROOT / "results" / "reference-gpu"
LIMIT_S, PLAN_S = 600, 540      # the device's per-command limit; the plan leaves 60 s for start, kills, tars
OLD_SUITE = {"cnn-cifar": "cnn", "rnn-palindrome": "rnn"}   # the suites' names in the reference bench
# Conservative figures where the reference has no record (stated in the plan).
NO_RECORD_COMPILE_S = 60.0      # a runner never measured: a torch.compile on a GPU takes tens of seconds
FP32_CNN_FACTOR = 3.0           # the CNN in full fp32 vs its TF32 record: fp32 without tensor cores
# A PyTorch candidate without a record of its own: the recorded runner it is estimated from, times
# a stated factor (a compiled optimizer step adds a second compile; max-autotune tries several
# kernels per matmul and convolution; nn.RNN compiles the same forward without the loop).
JAX_VARIANTS = ("fused-cb-off", "fused-cb-loop", "fused-cb-unroll")   # records.JAX_VARIANT_MODES
CANDIDATE_PROXY = {"compile": ("compile-cudagraphs", 1.0), "compile+opt": ("compile-cudagraphs", 1.5),
                   "compile-max-autotune": ("compile-cudagraphs", 3.0), "nn.RNN-eager": ("eager", 1.0),
                   "nn.RNN-compile": ("compile-cudagraphs", 1.0), "nn.RNN-compile+opt": ("compile-cudagraphs", 1.5),
                   # the JAX command-buffer variants compile the fused program with other options
                   **{v: ("fused", 1.0) for v in JAX_VARIANTS}}
# The GPU window's PyTorch candidates per bench step: (at bf16 and the recipe batch, at every
# precision). The headline rows (the CNN in bf16 at 256, the RNN at 128) get the candidates likely
# to be best within the window (CUDA graphs: these steps are launch-bound); the others, whose
# compiles cost most (max-autotune's kernel trials) or which are least likely to win, time in a
# step of their own after the headline ones, beside eager as the common reference.
RNN_CANDIDATES = (("eager", "compile", "compile-cudagraphs", "compile+opt", "nn.RNN-eager", "nn.RNN-compile"),
                  ("eager", "compile-cudagraphs", "nn.RNN-eager"))
RNN_MORE = (("eager", "compile-max-autotune", "nn.RNN-compile+opt"), ("eager",))
CNN_CANDIDATES = (("eager", "compile-cudagraphs", "compile+opt"), ("eager",))
CNN_MORE = (("eager", "compile", "compile-max-autotune"), ("eager",))
LIGHT_CANDIDATES = (("eager", "compile-cudagraphs"), ("eager", "compile-cudagraphs"))
VARIANT_MODES = ("fused", *JAX_VARIANTS)
RECIPE = {"cnn-cifar": 256, "rnn-palindrome": 128, "mlp-cifar": 256}   # the suites' recipe batches


def canonical_mode(mode: str, settings: dict) -> str:
    """An earlier bench.json's "compiled" in today's candidate names (train.bench.records.canonical_mode,
    not imported: the bench package imports JAX)."""
    if mode != "compiled":
        return mode
    return {"reduce-overhead": "compile-cudagraphs",
            "max-autotune-no-cudagraphs": "compile-max-autotune"}.get(settings.get("compile_mode"), "compile")


@dataclass
class Estimate:
    seconds: float
    source: str


@dataclass
class Step:
    name: str
    stage: str                  # check, bench, report or tests: `device_run.sh STAGE` runs those
    argv: list[str]
    estimate: Estimate
    headline: bool = False      # must fit the plan (tests/test_device_run.py checks)


def _read(path: Path) -> str:
    return path.read_text() if path.is_file() else ""


def _walls(log: str) -> dict[str, float]:
    """'== NAME: exit 0 after N s' lines of a device_run log: NAME -> N."""
    return {m[1]: float(m[2]) for m in re.finditer(r"^== (.+?): exit \d+ after (\d+) s$", log, re.M)}


def _ref_precision(p: str) -> str:
    """The reference's "fp32" computed in TF32 (results/reference-gpu/precision.json)."""
    return "tf32" if p == "fp32" else p


def torch_modes(candidates, precision: str, recipe: bool) -> tuple[str, ...]:
    """The PyTorch candidates a bench step times at ``precision`` (``candidates`` as RNN_CANDIDATES)."""
    return candidates[0] if precision == "bf16" and recipe else candidates[1]


def bench_estimate(suite: str, batch: int, precisions: list[str], candidates=LIGHT_CANDIDATES,
                   frameworks=("jax", "torch"), jax_modes=("fused",)) -> Estimate:
    """One bench process timing ``suite`` at ``batch``: JAX fused and each PyTorch candidate per
    precision. Per runner: its recorded compile time plus the group's timing time shared out."""
    log = _read(REF / "check" / "check.log")
    bench = json.loads(_read(REF / "check" / "bench" / "bench.json") or '{"records": []}')
    old = OLD_SUITE.get(suite, suite)
    groups = {(m[1], int(m[2])): float(m[3]) for m in re.finditer(r"^bench: (\S+) at batch (\d+) took ([\d.]+) s",
                                                                   log, re.M)}
    process = _walls(log).get("bench", 0.0) - sum(groups.values())
    recs = [{**r, "mode": canonical_mode(r["mode"], r["settings"])} for r in bench["records"]
            if r["suite"] == old and r["batch_size"] == batch and not r["skipped"]]
    runners = [(fw, m, p) for p in precisions
               for fw, m in [*(("jax", m) for m in jax_modes), *(("torch", m) for m in torch_modes(candidates, p, batch == RECIPE[suite]))]
               if fw in frameworks]
    if (old, batch) not in groups or not recs:
        return Estimate(len(runners) * NO_RECORD_COMPILE_S, f"no record of {suite} at batch {batch}: "
                                                            f"{NO_RECORD_COMPILE_S:.0f} s for each of its {len(runners)} runners")
    share = (groups[(old, batch)] - sum(r["compile_s"] for r in recs)) / len(recs)
    total, notes = max(process, 0.0), {"proxy": [], "none": [], "candidate": []}
    for fw, mode, p in runners:
        compile_s = _compile_of(recs, fw, mode, p, notes)
        if compile_s is None and mode in CANDIDATE_PROXY:
            base, factor = CANDIDATE_PROXY[mode]
            compile_s = _compile_of(recs, fw, base, p, {"proxy": [], "none": []})
            if compile_s is not None:
                notes["none"].pop()
                notes["candidate"].append(f"{mode} {p} (from {base} x{factor:g})")
                compile_s *= factor
        total += (NO_RECORD_COMPILE_S if compile_s is None else compile_s) + share
    src = (f"reference check.log: {old} at batch {batch} took {groups[(old, batch)]:.1f} s for {len(recs)} runners "
           f"(compile from bench.json, +{share:.1f} s timing each), +{process:.1f} s process start")
    for key, text in (("proxy", "the same runner's compile at another precision"),
                      ("candidate", "another candidate's compile"),
                      ("none", f"{NO_RECORD_COMPILE_S:.0f} s each")):
        if notes[key]:
            src += f"; no record of {', '.join(notes[key])}: {text}"
    return Estimate(round(total, 1), src)


def _compile_of(recs: list[dict], fw: str, mode: str, p: str, notes: dict) -> float | None:
    """The recorded compile time of ``fw mode`` at precision ``p`` (else at another, noted), or None."""
    same = [r for r in recs if (r["framework"], r["mode"]) == (fw, mode)]
    exact = [r for r in same if _ref_precision(r["precision"]) == _ref_precision(p)]
    if not same:
        notes["none"].append(f"{fw} {mode} {p}")
        return None
    if not exact:
        notes["proxy"].append(f"{fw} {mode} {p}")
    return max(r["compile_s"] for r in exact or same)


def _report_runs(log: str) -> list[tuple[str, float, float]]:
    """(experiment, wall s, compile s) of each run the reference report log printed, once per run
    (the seeds of one program print one line each with the same times)."""
    seen, out = set(), []
    for m in re.finditer(r"^(\S+) \[\w+\] test acc .*?, ([\d.]+) s \(([\d.]+) s compile\)", log, re.M):
        key = (m[1], m[2], m[3])
        if key not in seen:
            seen.add(key)
            out.append((m[1], float(m[2]), float(m[3])))
    return out


def report_core_estimate() -> Estimate:
    """toy, the CIFAR MLPs, the CNN and T=19 in full fp32: the reference's first two report calls,
    plus what they did not run."""
    log = _read(REF / "report.log")
    walls = _walls(log)
    calls = [w for name, w in walls.items() if name.startswith("report toy") and "sweep" not in name]
    if len(calls) < 2:
        return Estimate(300.0, "no record of the report's first groups: 300 s")
    runs = _report_runs(log.split("== report toy,mlp,cnn,t19:")[0])
    cnn = next((w - c for e, w, c in runs if e == "cnn-cifar"), 0.0)
    mlp = sum(w - c for e, w, c in runs if e == "mlp-cifar")
    extra_cnn = (FP32_CNN_FACTOR - 1) * cnn
    extra_mlp = 2 * mlp    # seeds 2 and 3 run one after another, their programs from the JAX cache
    return Estimate(round(sum(calls) + extra_cnn + extra_mlp, 1),
                    f"reference report.log: calls 'toy,mlp,cnn' and '+t19' took {' + '.join(f'{c:.0f}' for c in calls)} s "
                    f"(TF32, one seed); no record in full fp32: the CNN's training {cnn:.1f} s x{FP32_CNN_FACTOR:g} "
                    f"(+{extra_cnn:.1f} s); no record of 3 MLP seeds: 2 more times the MLPs' training {mlp:.1f} s "
                    f"(+{extra_mlp:.1f} s; compiled once); T=19's 3 seeds train side by side as 1 did")


def report_sweep_estimate(cell: str) -> Estimate:
    """One cell's length sweep (3 seeds side by side per length): its runs in the reference's last
    report call plus that call's overhead."""
    log = _read(REF / "report.log")
    last = log.split("== report toy,mlp,cnn,t19:")[-1]
    runs = [w for e, w, c in _report_runs(last) if e == "rnn-palindrome"]
    wall = _walls(log).get("report all")
    if len(runs) < 12 or wall is None:
        return Estimate(180.0, f"no record of the {cell} sweep: 180 s")
    half = runs[:6] if cell == "vanilla" else runs[6:]
    overhead = wall - sum(runs)
    return Estimate(round(sum(half) + overhead, 1),
                    f"reference report.log: the {cell} sweep's 6 runs {sum(half):.1f} s, +{overhead:.1f} s of the "
                    f"call's start and rendering (its 'report all' took {wall:.0f} s for both cells)")


def tests_estimate() -> Estimate:
    times = []
    for p in sorted((REF / "tests-rerun").glob("pytest-*.log")):
        m = re.search(r" in ([\d.]+)s", _read(p).strip().splitlines()[-1] if _read(p).strip() else "")
        if m:
            times.append(float(m[1]))
    if not times:
        return Estimate(240.0, "no record of the test suite: 240 s")
    return Estimate(round(max(times) + 15, 1),
                    f"reference tests-rerun/: slowest of {len(times)} parallel groups {max(times):.1f} s, +15 s "
                    f"start (the suite has grown since: the step's timeout has slack)")


ENV_CODE = """import json, subprocess
import jax
from train.backends.jax_backend import jax_device_info
from train.engine.results import package_versions
print(json.dumps({"devices": [str(d) for d in jax.devices()], "device": jax_device_info(),
                  "versions": package_versions()}, indent=1))
try:
    print(subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=20).stdout)
except Exception as e:  # no GPU tools here: fine on a CPU dry run
    print(f"nvidia-smi: {e}")
"""
PRECS = ["fp32", "tf32", "bf16"]


DRY_BATCH = {"cnn-cifar": 2, "rnn-palindrome": 8, "mlp-cifar": 64}   # a dry run's smallest batches


def _bench(py: str, work: Path, name: str, suite: str, batch: int, precs: list[str], dry: bool, extra=(),
           dry_as: tuple[str, str] = ("", "jax,torch"), candidates=LIGHT_CANDIDATES,
           frameworks: str = "jax,torch", jax_modes=("fused",)) -> list[str]:
    """One bench process timing ``candidates`` (as torch_modes reads them). A dry run times ``dry_as``
    (another suite, if named; frameworks) in fp32 at the smallest batch for a single step: the
    wiring, not the numbers, at a few seconds of CPU each."""
    modes = ",".join(dict.fromkeys((*jax_modes, *candidates[0], *candidates[1])))
    # Compiled candidates at bf16 and the recipe batch; those of the second list at every precision.
    policy = ",".join(["recipe-bf16", *(f"{c}:on" for c in candidates[1] if "compile" in c)])
    if dry:
        suite, frameworks = dry_as[0] or suite, dry_as[1]
    argv = [py, "-m", "train", "bench", "--suite", suite, "--frameworks", frameworks,
            "--modes", modes, "--out", str(work / name), *extra]
    if dry:   # the quick CPU workloads, one window, no torch.compile (minutes on a CPU); compile times
        # are not what a dry run checks, so its programs come from JAX's persistent cache when they can
        return argv + ["--batch-sizes", f"{suite}:{DRY_BATCH[suite]}", "--precision", "fp32",
                       "--quick", "--steps", "1", "--windows", "1", "--warmup", "0", "--torch-compile", "off",
                       "--compile-cache"]
    return argv + ["--batch-sizes", f"{suite}:{batch}", "--precision", ",".join(precs), "--torch-compile", policy]


def _report(py: str, work: Path, parts: str, data: str, dry: bool) -> list[str]:
    # On a CPU dry run even --quick trains for minutes, and the CNN and the sweeps longer: the same
    # calls on a tiny plan (scripts/dry_report.py) with cheap parts.
    if dry:
        return [py, "scripts/dry_report.py", "--quick", "--data", data, "--parts", "toy,mlp,t19",
                "--out", str(work / "results"), "--no-progress"]
    return [py, "-m", "train", "report", "--data", data, "--parts", parts, "--out", str(work / "results"),
            "--no-progress"]


# At dry size these bench steps run an earlier one's command again but for --out (the later one's
# folder: the earlier one's); the later report steps all run the first re-render's (scripts/dry_report.py's
# parts, its runs reused).
DRY_SAME_BENCH = {"bench-rnn128-variants": "bench-cnn256-variants", "bench-rnn8192": "bench-cnn1024"}


def out_name(step: Step) -> str:
    """A bench step's --out folder name (else empty)."""
    return Path(step.argv[step.argv.index("--out") + 1]).name if "--out" in step.argv else ""


def dry_repeats(plan: list[Step], py: str, work: Path) -> list[Step]:
    """The plan with each dry repeat (DRY_SAME_BENCH; a report step after the second) running
    scripts/dry_same.py: one line naming the earlier step, its bench folder copied; run on its own
    (--steps), the step's command instead."""
    benches = {out_name(s): s for s in plan if s.stage == "bench"}
    reports = [s for s in plan if s.stage == "report"]
    out = []
    for s in plan:
        if out_name(s) in DRY_SAME_BENCH:
            earlier = benches[DRY_SAME_BENCH[out_name(s)]]
            same = [earlier.name, str(work / out_name(earlier)), str(work / out_name(s))]
        elif s in reports[2:]:
            same = [reports[1].name, str(work / "results" / "REPORT.md")]
        else:
            out.append(s)
            continue
        out.append(dataclasses.replace(s, argv=[py, "scripts/dry_same.py", *same, "--", *s.argv]))
    return out


def steps(py: str, work: Path, data: str, dry: bool) -> list[Step]:
    """Every step, most valuable first; the estimates are the GPU run's even on a dry run."""
    plan = _steps(py, work, data, dry)
    return dry_repeats(plan, py, work) if dry else plan


def _steps(py: str, work: Path, data: str, dry: bool) -> list[Step]:
    env = _walls(_read(REF / "check" / "check.log")).get("env")
    core, rest_parts = "toy,mlp,cnn,t19", "toy,mlp,cnn,t19,sweep,lstm,schedule,torch"
    tests = ["tests/test_numpy_layers.py"] if dry else []
    profile = ["--profile", str(work / "profile"), "--profile-only", "*-fused-bf16-*,*-fused-*-b8",
               "--dump-hlo", str(work / "hlo")]
    return [
        Step("env", "check", [py, "-c", ENV_CODE],
             Estimate(env, "reference check.log") if env else Estimate(20.0, "no record: 20 s"), True),
        Step("bench rnn b128", "bench", _bench(py, work, "bench-rnn128", "rnn-palindrome", 128, PRECS, dry,
                                               candidates=RNN_CANDIDATES),
             bench_estimate("rnn-palindrome", 128, PRECS, RNN_CANDIDATES), True),
        Step("bench cnn b256", "bench", _bench(py, work, "bench-cnn256", "cnn-cifar", 256, PRECS, dry,
                                               candidates=CNN_CANDIDATES),
             bench_estimate("cnn-cifar", 256, PRECS, CNN_CANDIDATES), True),
        Step(f"report {core}", "report", _report(py, work, core, data, dry), report_core_estimate(), True),
        Step("tests", "tests", [py, "scripts/parallel_pytest.py", "1" if dry else "14", str(work / "tests"), *tests],
             tests_estimate(), True),
        Step("bench cnn b256 bf16, more PyTorch", "bench",
             # dry: the RNN, the CNN's eager PyTorch already ran in the step above
             _bench(py, work, "bench-cnn256-more", "cnn-cifar", 256, ["bf16"], dry, dry_as=("rnn-palindrome", "torch"),
                    candidates=CNN_MORE, frameworks="torch"),
             bench_estimate("cnn-cifar", 256, ["bf16"], CNN_MORE, frameworks=("torch",))),
        Step("bench rnn b128 bf16, more PyTorch", "bench",
             _bench(py, work, "bench-rnn128-more", "rnn-palindrome", 128, ["bf16"], dry, dry_as=("", "torch"),
                    candidates=RNN_MORE, frameworks="torch"),
             bench_estimate("rnn-palindrome", 128, ["bf16"], RNN_MORE, frameworks=("torch",))),
        # XLA's command buffers over the fused loop, beside fused, for the GPU default (jax_variants).
        Step("bench cnn b256 bf16, JAX variants", "bench",
             _bench(py, work, "bench-cnn256-variants", "cnn-cifar", 256, ["bf16"], dry, dry_as=("rnn-palindrome", "jax"),
                    frameworks="jax", jax_modes=VARIANT_MODES),
             bench_estimate("cnn-cifar", 256, ["bf16"], frameworks=("jax",), jax_modes=VARIANT_MODES)),
        Step("bench rnn b128 fp32, JAX variants", "bench",
             _bench(py, work, "bench-rnn128-variants", "rnn-palindrome", 128, ["fp32"], dry, dry_as=("", "jax"),
                    frameworks="jax", jax_modes=VARIANT_MODES),
             bench_estimate("rnn-palindrome", 128, ["fp32"], frameworks=("jax",), jax_modes=VARIANT_MODES)),
        Step(f"report {core},sweep", "report", _report(py, work, core + ",sweep", data, dry),
             report_sweep_estimate("vanilla")),
        Step(f"report {core},sweep,lstm", "report", _report(py, work, core + ",sweep,lstm", data, dry),
             report_sweep_estimate("lstm")),
        Step("bench cnn b1024 bf16 (profiles)", "bench",
             # dry: the RNN in JAX, whose compile is seconds, not the CNN's minute, through the same profiles
             _bench(py, work, "bench-cnn1024", "cnn-cifar", 1024, ["bf16"], dry, profile, ("rnn-palindrome", "jax")),
             bench_estimate("cnn-cifar", 1024, ["bf16"])),
        Step("bench rnn b8192 bf16", "bench", _bench(py, work, "bench-rnn8192", "rnn-palindrome", 8192, ["bf16"], dry,
                                                     dry_as=("", "jax")),
             bench_estimate("rnn-palindrome", 8192, ["bf16"])),
        Step("report all", "report", _report(py, work, rest_parts, data, dry),
             Estimate(240.0, "no record of the schedule ablation and the PyTorch twins: 240 s")),
        Step("bench mlp-cifar b256", "bench", _bench(py, work, "bench-mlp256", "mlp-cifar", 256, ["fp32", "bf16"], dry,
                                                            dry_as=("", "jax")),
             bench_estimate("mlp-cifar", 256, ["fp32", "bf16"])),
    ]


def fit(plan: list[Step], budget: float = PLAN_S) -> list[Step]:
    """The steps planned: in order, each that still fits ``budget`` with those before it. The others
    run only if the planned ones leave them time."""
    out, total = [], 0.0
    for s in plan:
        if total + s.estimate.seconds <= budget:
            out.append(s)
            total += s.estimate.seconds
    return out


def describe(plan: list[Step], budget: float = PLAN_S) -> str:
    """The plan as printed before the run: one line per step with its estimate and where it comes from."""
    planned = fit(plan, budget)
    total = sum(s.estimate.seconds for s in planned)
    lines = [f"plan: {len(planned)} steps planned, estimated {total:.0f} s of {budget:.0f} s "
             f"(the device's limit {LIMIT_S} s; the rest is margin for start-up, interrupts and the tar). "
             f"Estimates are cold first compiles, as on the bare reference machine."]
    for i, s in enumerate(plan, 1):
        mark = "planned" if s in planned else "if time is left"
        lines.append(f"  {i:2d}. {s.name:34s} {s.estimate.seconds:6.1f} s  [{mark}]  {s.estimate.source}")
    return "\n".join(lines)
