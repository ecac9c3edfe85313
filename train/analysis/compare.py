"""``python -m train compare RUN_DIR...``: any set of finished runs side by side.

Overlays their curves (frameworks, seeds, precisions...) and writes ``compare.json`` and
``compare.md``: per pair of runs the largest loss difference over the evaluations both made,
the final and best test accuracy differences, and the examples/s and compile-time ratios.
"""

from __future__ import annotations

import glob
import itertools
import json
import os
import sys
from pathlib import Path

from train.analysis import plots
from train.engine.results import (atomic_write_json, atomic_write_text, is_writer, lock_holder, read_jsonl,
                                  require_writable)
from train.errors import UsageError
from train.engine.run_files import damage


def load_run(path: Path) -> dict:
    """A finished run's label, summary and metric rows; anything else is a UsageError naming the file."""
    path = Path(path)
    holder = lock_holder(path)
    if holder:  # any summary.json there is an earlier attempt's, which this one is about to remove
        raise UsageError(f"{path} is still running ({holder}); compare it once it has finished")
    try:
        summary = json.loads((path / "summary.json").read_text())
    except OSError as e:
        raise UsageError(f"{path} is not a finished run folder (needs summary.json and metrics.jsonl): "
                         f"{e.strerror or e}") from None
    except ValueError:
        raise UsageError(f"{path / 'summary.json'} is damaged (not JSON: cut short?)") from None
    why = damage(path, summary, ("metrics.jsonl",)) if isinstance(summary, dict) else "summary.json: not a summary"
    if why:
        raise UsageError(f"{path} is damaged ({why})")
    try:
        rows = read_jsonl(path / "metrics.jsonl")
    except OSError as e:
        raise UsageError(f"{path / 'metrics.jsonl'} cannot be read: {e.strerror or e}") from None
    return {"label": f"{path.parent.name}/{path.name}", "path": str(path), "summary": summary, "rows": rows}


def expand(patterns: list[str]) -> list[Path]:
    """Run folders from paths or globs, in order, each once; a glob skips unusable runs with a note."""
    out: list[Path] = []
    for p in patterns:
        found = [Path(f) for f in sorted(glob.glob(p)) if _usable(Path(f))] if glob.has_magic(p) else [Path(p)]
        if not found:
            raise UsageError(f"no finished run folder matches {p!r}")
        out += [f for f in found if f not in out]
    return out


def _usable(path: Path) -> bool:
    """Whether a folder a glob matched is a finished run to compare; a run folder that is not says so."""
    if not any((path / name).is_file() for name in ("summary.json", "config.json")):
        return False  # not a run folder
    try:
        load_run(path)
    except UsageError as e:
        print(f"note: left out of the comparison: {e}", file=sys.stderr)
        return False
    return True


def _ratio(a, b):
    return b / a if a and b is not None else None


def compare_pair(a: dict, b: dict) -> dict:
    """How run ``b`` differs from run ``a``."""
    def by_key(rows):
        return {(r.get("step"), r["split"]): r for r in rows}
    ra, rb = by_key(a["rows"]), by_key(b["rows"])
    common = sorted(set(ra) & set(rb), key=lambda k: (k[0] or 0, k[1]))
    sa, sb = a["summary"], b["summary"]
    return {
        "a": a["label"], "b": b["label"], "evaluations_compared": len(common),
        "max_abs_loss_diff": max((abs(ra[k]["loss"] - rb[k]["loss"]) for k in common), default=None),
        "max_abs_accuracy_diff": max((abs(ra[k]["accuracy"] - rb[k]["accuracy"]) for k in common), default=None),
        "final_test_accuracy_diff": sb["final"]["test_accuracy"] - sa["final"]["test_accuracy"],
        "best_test_accuracy_diff": sb["best_test_accuracy"] - sa["best_test_accuracy"],
        "examples_per_s_ratio": _ratio(sa.get("examples_per_s"), sb.get("examples_per_s")),
        "compile_time_ratio": _ratio(sa.get("compile_time_s"), sb.get("compile_time_s")),
    }


def _fmt(x, spec: str) -> str:
    return "–" if x is None else format(x, spec)


def _task(summary: dict) -> str:
    """What a run learned: its experiment and, where the summary names it, its data."""
    data = summary.get("dataset") or summary.get("data_source")
    return str(summary.get("experiment", "?")) + (f" on {data}" if data else "")


def mixed_note(runs: list[dict]) -> str | None:
    """A warning when the runs learned different tasks, whose losses and accuracies differ by design."""
    tasks = list(dict.fromkeys(_task(r["summary"]) for r in runs))
    if len(tasks) < 2:
        return None
    return (f"these runs learned different tasks ({'; '.join(tasks)}): their differences are between "
            f"tasks, not a measure of how far two runs of one task agree")


def markdown(runs: list[dict], pairs: list[dict], note: str | None = None) -> str:
    L = ["# Runs compared", "", *([f"**Note:** {note}.", ""] if note else []), "![curves](curves.png)", "",
         "| run | framework | final test acc | best test acc | final test loss | ex/s | compile s |",
         "|---|---|---|---|---|---|---|"]
    for r in runs:
        s = r["summary"]
        L.append(f"| {r['label']} | {s.get('framework', '?')} | {s['final']['test_accuracy']:.4f} | "
                 f"{s['best_test_accuracy']:.4f} | {s['final']['test_loss']:.4g} | "
                 f"{_fmt(s.get('examples_per_s'), ',.0f')} | {_fmt(s.get('compile_time_s'), '.2f')} |")
    L += ["", "Each pair: b minus a (differences), b over a (ratios); loss and accuracy differences over the "
          "evaluations both runs made (same step and split).", "",
          "| a | b | evaluations | max abs loss diff | final test acc diff | best test acc diff | ex/s ratio "
          "| compile ratio |", "|---|---|---|---|---|---|---|---|"]
    for p in pairs:
        L.append(f"| {p['a']} | {p['b']} | {p['evaluations_compared']} | {_fmt(p['max_abs_loss_diff'], '.3e')} | "
                 f"{p['final_test_accuracy_diff']:+.4f} | {p['best_test_accuracy_diff']:+.4f} | "
                 f"{_fmt(p['examples_per_s_ratio'], '.2f')} | {_fmt(p['compile_time_ratio'], '.2f')} |")
    return "\n".join(L) + "\n"


def compare(run_dirs: list[Path], out: Path) -> dict:
    """Write ``out``/compare.json, compare.md and curves.png for these runs; return compare.json's contents."""
    if len(run_dirs) < 2:
        raise UsageError(f"compare needs at least two run folders, got {len(run_dirs)}")
    return compare_loaded([load_run(Path(d)) for d in run_dirs], Path(out))


def compare_loaded(runs: list[dict], out: Path) -> dict:
    """:func:`compare` of runs in memory, as :func:`load_run` gives them (a label, path, summary and rows)."""
    if any(os.path.lexists(Path(out) / name) for name in ("summary.json", "config.json")):  # no OSError on odd paths
        raise UsageError(f"--out {out} is a run folder: its curves.png would be overwritten; write to another folder")
    labels = [r["label"] for r in runs]
    if len(set(labels)) < len(labels):  # same experiment/run name under different roots: use the paths
        for r in runs:
            r["label"] = r["path"]
    pairs = [compare_pair(a, b) for a, b in itertools.combinations(runs, 2)]
    if is_writer():  # only once the runs are known good: bad input leaves nothing behind
        require_writable(Path(out), "the comparison")
    doc = {"runs": [{"label": r["label"], "path": r["path"], "framework": r["summary"].get("framework"),
                     "final": r["summary"]["final"], "best_test_accuracy": r["summary"]["best_test_accuracy"],
                     "examples_per_s": r["summary"].get("examples_per_s"),
                     "compile_time_s": r["summary"].get("compile_time_s")} for r in runs],
           "pairs": pairs, "note": mixed_note(runs)}
    x = "epoch" if all("epoch" in r["rows"][0] for r in runs if r["rows"]) else "step"
    plots.plot_curves({r["label"]: r["rows"] for r in runs}, out / "curves.png", title="runs compared", xlabel=x)
    atomic_write_json(out / "compare.json", doc)
    atomic_write_text(out / "compare.md", markdown(runs, pairs, doc["note"]))
    return doc


def add_parser(sub) -> None:
    p = sub.add_parser("compare", help="overlay any finished runs and tabulate how far apart they are",
                       description="Overlays the curves of finished runs (frameworks, seeds, precisions) and writes "
                                   "<out>/compare.json, compare.md and curves.png: per pair of runs the max |loss "
                                   "difference| over the evaluations both made, final and best test accuracy "
                                   "differences, examples/s and compile-time ratios.")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders, or globs such as 'results/mlp-toy/*-s0'")
    p.add_argument("--out", default="results/compare", help="where to write (default: results/compare)")
    p.set_defaults(func=cmd_compare)


def compare_runs(run_dirs: list[Path] | list[dict], out: Path, *, by: str | None = None,
                 margin: float | None = None) -> dict:
    """:func:`compare` (of run folders, or of runs in memory as :func:`load_run` gives them), then one
    line with the largest |loss difference| (what a run of several frameworks ends with). ``by`` and
    ``margin`` are accepted for the grouped statistics, which are not implemented here yet."""
    loaded = all(isinstance(r, dict) for r in run_dirs)
    doc = compare_loaded(list(run_dirs), Path(out)) if loaded else compare(run_dirs, Path(out))
    if doc["note"]:
        print(f"note: {doc['note']}", file=sys.stderr)
    worst = max((p["max_abs_loss_diff"] for p in doc["pairs"] if p["max_abs_loss_diff"] is not None), default=None)
    print(f"compare: {len(doc['runs'])} runs, {len(doc['pairs'])} pairs, max |loss diff| "
          f"{_fmt(worst, '.3e')}; {Path(out) / 'compare.md'}")
    return doc


def cmd_compare(args) -> int:
    compare_runs(expand(args.runs), Path(args.out))
    return 0
