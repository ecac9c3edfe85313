"""``python -m train report``: every experiment of the original, then ``REPORT.md`` beside the results.

Runs Part 1 Tasks 1-2 (three toy sets, NumPy and JAX), Task 3 (CIFAR MLP,
plain and improved), Part 2 (the CNN), Part 3 (T=19 and the sequence-length
sweep, vanilla and LSTM), then writes ``<out>/REPORT.md`` with every figure,
a table per part and the original's reported results beside ours.

A finished run whose settings are unchanged is read back, not rerun
(``--force`` reruns); a run that was interrupted resumes from its checkpoint.
``--quick`` scales everything down to finish in minutes on a 2-core CPU and
says so at the top of the report.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from data.toy import make_toy_data
from train.analysis import plots
from train.experiments import cifar, mlp_toy, rnn, rnn_sweep
from train.engine.driver import reuse_resume_or_train
from train.report import frameworks, plan as P
from train.report.render import render
from train.report.rerender import read_results, report_command
from train.engine.results import atomic_write_text, claim_dir, release_run_dir, run_config
from train.errors import UsageError


def _run_or_reuse(train_fn, cfg, workdir: Path, run_name: str, *, force: bool, progress, log: list[str]) -> dict:
    """Read back a finished run with the same settings; resume an interrupted one; else train."""
    def train(todo, resume):
        return [train_fn(cfg, workdir, progress=progress, resume=resume)]
    return reuse_resume_or_train([workdir / run_name], [run_config(cfg)], train, reuse=not force, resume=not force,
                                 log=log)[0]


def _toy_run_or_reuse(cfg, workdir: Path, *, force: bool, progress, log: list[str]) -> dict:
    """A toy set's runs (every framework of ``cfg``) and their comparison, read back if all are there."""
    names = {fw: f"{cfg.dataset}-{fw}-s{cfg.seed}" for fw in mlp_toy.frameworks(cfg)}
    files = {"compare": workdir / f"{cfg.dataset}-compare-s{cfg.seed}" / "compare.json"} if len(names) > 1 else {}
    read, trained = {}, {}

    def intact() -> bool:
        docs = _read_json_files(files)
        read.update(docs or {})
        return docs is not None

    def train(todo, resume):
        trained.update(mlp_toy.train_and_evaluate(cfg, workdir, progress=progress))
        return [trained[fw] for fw in names]

    got = reuse_resume_or_train([workdir / n for n in names.values()], [run_config(cfg)] * len(names), train,
                                reuse=not force, resume=False, label=f"{workdir}/{cfg.dataset}-*", log=log,
                                together=intact)
    return trained or {**dict(zip(names, got)), **read}


def _read_json_files(files: dict[str, Path]) -> dict | None:
    """{key: contents} of these JSON files; None if any is missing or damaged (then they are made again)."""
    out = {}
    for k, p in files.items():
        try:
            out[k] = json.loads(p.read_text())
        except (OSError, ValueError) as e:
            if p.exists():
                print(f"note: {p} cannot be read ({getattr(e, 'strerror', None) or 'not JSON: cut short?'}); "
                      f"redoing its runs", file=sys.stderr)
            return None
    return out


def run_report(quick: bool, out: str | Path, *, data: str = "auto", force: bool = False, seed: int = 0,
               progress: bool | None = None, parts: tuple[str, ...] = P.PARTS, render_only: bool = False, seeds: int = 3) -> Path:
    """Run (or reuse) every experiment of the plan, then write REPORT.md; ``render_only``: write it from the
    runs already in ``out``, training nothing (a one-line error if one is missing)."""
    t0 = time.perf_counter()
    out = Path(out)
    source, data_note = P.resolve_data(data)
    plan = P.select_parts(P.make_plan(quick, source, seed, seeds), parts)
    command = report_command(quick, out, data=data, seed=seed, parts=parts, seeds=seeds, render_only=render_only)
    if render_only and force:
        raise UsageError("--render-only trains nothing; --force does not apply")
    claim_dir(out, user="report")  # a second report of these results would replace runs this one reads back
    try:
        if render_only:
            return _render_only(plan, out, source, data_note, command=command, t0=t0)
        return _run_plan(plan, out, source, data_note, force=force, seed=seed, progress=progress, t0=t0,
                         command=command)
    finally:
        release_run_dir(out)


def _render_only(plan: P.Plan, out: Path, source: str, data_note: str, *, command: str, t0: float) -> Path:
    results = read_results(plan, out)
    path = out / "REPORT.md"
    atomic_write_text(path, render(plan, results, out, total_s=time.perf_counter() - t0, data_source=source,
                                   data_note=data_note, command=command,
                                   log=["every run read back from this folder, nothing trained (`--render-only`)"]))
    print(f"report: {path} (re-rendered from its runs)")
    return path


def _run_plan(plan: P.Plan, out: Path, source: str, data_note: str, *, force: bool, seed: int, progress,
              t0: float, command: str = "") -> Path:
    log: list[str] = []
    results: dict = {"toy": {}, "cifar": {}, "rnn": {}, "frameworks": {}}

    for cfg in plan.toy:
        results["toy"][cfg.dataset] = _toy_run_or_reuse(cfg, out / mlp_toy.EXPERIMENT, force=force,
                                                        progress=progress, log=log)
    if plan.toy:
        plots.plot_toy_datasets([make_toy_data(c.dataset, n_samples=c.samples, seed=c.seed) for c in plan.toy],
                                out / mlp_toy.EXPERIMENT / f"datasets-s{seed}.png")

    # Each seed is an ordinary run of its own, trained in turn.
    frameworks.each_run(plan, results, out, lambda fn, c, workdir, name: _run_or_reuse(
        fn, c, workdir, name, force=force, progress=progress, log=log))
    sw = plan.sweep
    if sw:
        results["rnn"]["sweep"] = rnn_sweep.sweep(sw["cfg"], sw["lengths"], sw["seeds"], sw["cells"], out,
                                            progress=progress, reuse=not force)
    ab = plan.ablation
    if ab:
        results["rnn"]["ablation"] = rnn_sweep.sweep(ab["cfg"], ab["lengths"], ab["seeds"], ab["cells"], out,
                                               progress=progress, reuse=not force)
    total = time.perf_counter() - t0
    path = out / "REPORT.md"
    atomic_write_text(path, render(plan, results, out, total_s=total, data_source=source, data_note=data_note,
                                   log=log, command=command))
    print(f"report: {path} ({total:.0f} s; {sum(x.startswith('reused') for x in log)} runs reused)")
    return path


def add_parser(sub, common) -> None:
    p = sub.add_parser("report", help="run every experiment of the original and write REPORT.md",
                       description="Runs every experiment (Part 1 Tasks 1-3, Part 2, Part 3 with the length sweep) "
                                   "and writes <out>/REPORT.md with every figure, a table per part, and the "
                                   "original's results beside ours. Finished runs with unchanged settings are reused.")
    p.add_argument("--data", default="auto",
                   help="CIFAR-10 source (see mlp-cifar --help); auto: ../shared/datasets/cifar10-jpg if present, "
                        "else a prepared tfds build, else synthetic data with a warning in the report (default: auto)")
    p.add_argument("--force", action="store_true", help="rerun every experiment even if a finished run exists")
    p.add_argument("--seed", type=int, default=0, help="seed of every experiment (default: 0)")
    p.add_argument("--seeds", type=int, default=3,
                   help="seeds (--seed, --seed+1, ...) behind each seed-dependent verdict: T=19, the CIFAR MLPs and "
                        "their PyTorch twins, the length sweeps (never fewer than 3 in a full report); below 3 the "
                        "verdicts say they are single-seed (default: 3; --quick trains more than one only for T=19)")
    p.add_argument("--parts", default=None,
                   help=f"comma-separated parts to run, from {', '.join(P.PARTS)} (default: all); REPORT.md says "
                        "which were left out")
    p.add_argument("--skip", default=None, help="comma-separated parts to leave out, e.g. --skip cnn on a CPU")
    p.add_argument("--render-only", action="store_true",
                   help="write REPORT.md from the finished runs already in --out with today's report code, training "
                        "nothing; fails with one line if a run the plan names is missing or ran with other settings")
    common(p)
    p.set_defaults(func=cmd_report)


def cmd_report(args) -> int:
    if args.resume or args.checkpoint_every is not None:
        raise UsageError("report resumes interrupted runs by itself; --resume and --checkpoint-every do not apply")
    run_report(args.quick, args.out, data=args.data, force=args.force, seed=args.seed,
               progress=False if args.no_progress else None, parts=P.parse_parts(args.parts, args.skip),
               render_only=args.render_only, seeds=args.seeds)
    return 0
