"""``report --render-only``: REPORT.md again from the runs already in its folder, with today's report code.

Nothing is trained. Every run the plan names must be there, finished, with the plan's settings
(config.json), or the command stops with one line saying which is not. Comparisons and figures missing
beside the runs (made by the report code of the day the runs ran) are made from the runs' metrics.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from train.analysis import plots
from train.analysis.compare import compare_runs
from train.engine.results import read_jsonl, run_config
from train.errors import UsageError
from train.experiments import mlp_toy, rnn
from train.report import frameworks, plan as P

FRAMEWORKS = ("numpy", "jax", "torch")


def report_command(quick: bool, out, *, data: str = "auto", seed: int = 0, parts: tuple[str, ...] = P.PARTS,
                   seeds: int = 3, render_only: bool = False) -> str:
    """The command line that makes this report again: every flag that changes what it shows."""
    out = Path(out)
    if out.is_absolute() and out.resolve().is_relative_to(P.ROOT):
        out = out.resolve().relative_to(P.ROOT)
    cmd = ["python -m train report"] + (["--quick"] if quick else []) + [f"--out {out}"]
    cmd += [f"--data {data}"] if data != "auto" else []
    cmd += [f"--seed {seed}"] if seed else []
    cmd += [f"--seeds {seeds}"] if seeds != 3 else []
    cmd += [f"--parts {','.join(parts)}"] if tuple(parts) != P.PARTS else []
    return " ".join(cmd + (["--render-only"] if render_only else []))


def _finished(run_dir: Path, cfg, *, ignore: tuple[str, ...] = ()) -> tuple[dict, dict]:
    """(summary.json, config.json) of a run finished with ``cfg``'s settings; else a one-line UsageError."""
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
        record = json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError):
        raise UsageError(f"--render-only: no finished run in {run_dir}; run the report without --render-only "
                         "to train it") from None
    want = json.loads(json.dumps(run_config(cfg)))
    saved = record.get("config", {})
    changed = sorted(k for k in set(want) | set(saved) if k not in ignore and want.get(k) != saved.get(k))
    if changed:
        raise UsageError(f"--render-only: {run_dir} ran with other settings than this report's plan "
                         f"({', '.join(f'{k}={saved.get(k)!r}, plan {want.get(k)!r}' for k in changed)})")
    return summary, record


def _compare(run_dirs: list[Path], out: Path) -> dict:
    try:
        return json.loads((out / "compare.json").read_text())
    except (OSError, ValueError):
        return compare_runs(run_dirs, out)


def _toy(plan: P.Plan, out: Path, records: list[dict]) -> dict:
    """Each toy set's runs (the frameworks present; NumPy and JAX at least) and their comparison."""
    toy = {}
    for cfg in plan.toy:
        workdir = out / mlp_toy.EXPERIMENT
        dirs = {fw: workdir / f"{cfg.dataset}-{fw}-s{cfg.seed}" for fw in FRAMEWORKS}
        dirs = {fw: d for fw, d in dirs.items() if fw in ("numpy", "jax") or d.is_dir()}
        s = {}
        for fw, d in dirs.items():  # which frameworks ran together is how they were run, not what they computed
            s[fw], record = _finished(d, cfg, ignore=("framework",))
            records.append(record)
        s["compare"] = _compare(list(dirs.values()), workdir / f"{cfg.dataset}-compare-s{cfg.seed}")
        toy[cfg.dataset] = s
    return toy


def _sweep(part: dict, out: Path) -> dict | None:
    """The sweep's sweep.json, checked against the plan: its settings, lengths, seeds and cells."""
    if not part or not part.get("cells"):
        return None
    cfg = part["cfg"]
    path = out / cfg.sweep_name / "sweep.json"
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        raise UsageError(f"--render-only: no finished sweep in {path}; run the report without --render-only") from None
    want = json.loads(json.dumps(run_config(cfg)))
    have = {(r["cell"], r["input_length"], r["seed"]) for r in doc["runs"]}
    need = {(c, t, cfg.seed + k) for c in part["cells"] for t in part["lengths"] for k in range(part["seeds"])}
    if doc["config"] != want or not need <= have:
        raise UsageError(f"--render-only: {path} is not the plan's sweep (settings, or runs "
                         f"{sorted(need - have)[:3]} missing)")
    rows = [r for r in doc["runs"] if (r["cell"], r["input_length"], r["seed"]) in need]
    summary = {c: [r for r in doc["summary"][c] if r["input_length"] in part["lengths"]] for c in part["cells"]}
    _sweep_figures(cfg, part, out)
    return {**doc, "lengths": part["lengths"], "seeds": part["seeds"], "cells": part["cells"], "runs": rows,
            "summary": summary}


def _sweep_figures(cfg, part: dict, out: Path) -> None:
    """Every seed's curves per (cell, T), where they were not kept beside the sweep."""
    for cell in part["cells"]:
        for t in part["lengths"]:
            fig = out / cfg.sweep_name / f"T{t}-{cell}-curves.png"
            names = [dataclasses.replace(cfg, input_length=t, cell=cell, seed=cfg.seed + k).run_name
                     for k in range(part["seeds"])]
            if not fig.exists():
                plots.plot_curves({n: read_jsonl(out / rnn.EXPERIMENT / n / "metrics.jsonl") for n in names}, fig,
                                  xlabel="epoch", title=f"palindrome T={t} ({cell}), {part['seeds']} seed(s)")


def read_results(plan: P.Plan, out: Path) -> dict:
    """The ``results`` a report's render needs, read from ``out`` (nothing trained), plus the runs' ``provenance``
    (the devices and package versions their config.json recorded)."""
    out = Path(out)
    records: list[dict] = []

    def one(cfg, workdir: Path, name: str) -> dict:
        summary, record = _finished(workdir / name, cfg)
        records.append(record)
        return summary

    results: dict = {"toy": _toy(plan, out, records), "cifar": {}, "rnn": {}, "frameworks": {}}
    frameworks.each_run(plan, results, out, lambda fn, c, workdir, name: one(c, workdir, name))
    for key, part in (("sweep", plan.sweep), ("ablation", plan.ablation)):
        doc = _sweep(part, out)
        if doc is not None:
            results["rnn"][key] = doc
    jax_runs = [r for r in records if r.get("framework") == "jax"] or records
    if jax_runs:
        results["provenance"] = {"devices": jax_runs[0].get("devices", {}), "versions": jax_runs[0].get("versions", {})}
    return results
