"""``python -m train compare RUN_DIR...``: any set of finished runs side by side.

Overlays their curves (frameworks, seeds, precisions...) and writes ``compare.json`` and
``compare.md``: per pair of runs the largest loss difference over the evaluations both made,
the final and best test accuracy differences, and the examples/s and compile-time ratios.
With ``--by KEY`` the runs form groups (by framework, precision, lr...) and each pair of groups
gets intervals, a two-sample test and an equivalence verdict (``train.analysis.groups``); the
run-by-run comparison is then kept for the twin runs (same seed, same batches) only.
"""

from __future__ import annotations

import glob
import itertools
import json
import os
import sys
from pathlib import Path

from train.analysis import groups, plots, stats
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


def _runs_md(runs: list[dict]) -> list[str]:
    L = ["| run | framework | final test acc | best test acc | final test loss | ex/s | compile s | wall s |",
         "|---|---|---|---|---|---|---|---|"]
    for r in runs:
        s = r["summary"]
        L.append(f"| {r['label']} | {s.get('framework', '?')} | {s['final']['test_accuracy']:.4f} | "
                 f"{s['best_test_accuracy']:.4f} | {s['final']['test_loss']:.4g} | "
                 f"{_fmt(s.get('examples_per_s'), ',.0f')} | {_fmt(s.get('compile_time_s'), '.2f')} | "
                 f"{_fmt(s.get('wall_time_s'), '.2f')} |")
    return L


def _pairs_md(pairs: list[dict]) -> list[str]:
    L = ["Each pair: b minus a (differences), b over a (ratios); loss and accuracy differences over the "
         "evaluations both runs made (same step and split).", "",
         "| a | b | evaluations | max abs loss diff | final test acc diff | best test acc diff | ex/s ratio "
         "| compile ratio |", "|---|---|---|---|---|---|---|---|"]
    for p in pairs:
        L.append(f"| {p['a']} | {p['b']} | {p['evaluations_compared']} | {_fmt(p['max_abs_loss_diff'], '.3e')} | "
                 f"{p['final_test_accuracy_diff']:+.4f} | {p['best_test_accuracy_diff']:+.4f} | "
                 f"{_fmt(p['examples_per_s_ratio'], '.2f')} | {_fmt(p['compile_time_ratio'], '.2f')} |")
    return L


def markdown(runs: list[dict], pairs: list[dict], note: str | None = None, doc: dict | None = None) -> str:
    grouped = doc is not None and doc.get("grouped")
    title = f"# Runs compared by {grouped['by']}" if grouped else "# Runs compared"
    L = [title, "", *([f"**Note:** {note}.", ""] if note else [])]
    if grouped:
        L += groups.markdown(doc) + ["", "## The runs", ""]
    L += ["![curves](curves.png)", "", *_runs_md(runs), ""]
    if grouped:
        L += ["## Exact comparisons: twin runs (same seed, same batches)", ""]
        if not pairs:
            L += ["No two runs of different groups share a seed and every other setting.", ""]
    if pairs or not grouped:
        L += _pairs_md(pairs)
    return "\n".join(L) + "\n"


def check_grouping(by: str | None, margin: float | None, speed_margin: float | None) -> None:
    """--margin and --speed-margin: positive numbers, and only with --by (UsageError otherwise)."""
    for name, v in (("--margin", margin), ("--speed-margin", speed_margin)):
        if v is None:
            continue
        if not 0 < v < float("inf"):
            raise UsageError(f"{name} must be a positive number, got {v:g}")
        if by is None:
            raise UsageError(f"{name} judges groups of runs: give --by (e.g. --by framework)")


def compare(run_dirs: list[Path], out: Path, by: str | None = None, margin: float | None = None,
            speed_margin: float | None = None) -> dict:
    """Write ``out``/compare.json, compare.md and curves.png for these runs; return compare.json's contents.
    ``by``: group the runs by this setting and compare the groups (see ``train.analysis.groups``)."""
    check_grouping(by, margin, speed_margin)
    if len(run_dirs) < 2:
        raise UsageError(f"compare needs at least two run folders, got {len(run_dirs)}")
    return compare_loaded([load_run(Path(d)) for d in run_dirs], Path(out), by, margin, speed_margin)


def _run_entry(r: dict, by: str | None) -> dict:
    s = r["summary"]
    return {"label": r["label"], "path": r["path"], "framework": s.get("framework"),
            **({"group": str(groups.setting(r, by))} if by else {}), "final": s["final"],
            "best_test_accuracy": s["best_test_accuracy"], "examples_per_s": s.get("examples_per_s"),
            "compile_time_s": s.get("compile_time_s"), "wall_time_s": s.get("wall_time_s")}


def compare_loaded(runs: list[dict], out: Path, by: str | None = None, margin: float | None = None,
                   speed_margin: float | None = None) -> dict:
    """:func:`compare` of runs in memory, as :func:`load_run` gives them (a label, path, summary and rows)."""
    check_grouping(by, margin, speed_margin)
    if any(os.path.lexists(Path(out) / name) for name in ("summary.json", "config.json")):  # no OSError on odd paths
        raise UsageError(f"--out {out} is a run folder: its curves.png would be overwritten; write to another folder")
    labels = [r["label"] for r in runs]
    if len(set(labels)) < len(labels):  # same experiment/run name under different roots: use the paths
        for r in runs:
            r["label"] = r["path"]
    grouped = groups.analyse(runs, by, margin, speed_margin) if by else None
    twins = grouped.pop("_twins") if grouped else itertools.combinations(runs, 2)
    pairs = [compare_pair(a, b) for a, b in twins]
    if is_writer():  # only once the runs are known good: bad input leaves nothing behind
        require_writable(Path(out), "the comparison")
    doc = {"runs": [_run_entry(r, by) for r in runs], "pairs": pairs, "note": mixed_note(runs),
           **({"grouped": grouped} if grouped else {})}
    x = groups.x_axis(runs)
    plots.plot_curves({r["label"]: r["rows"] for r in runs}, out / "curves.png", title="runs compared", xlabel=x)
    if grouped:
        plots.plot_group_points(grouped, out / "groups.png")
        plots.plot_group_curves(grouped, out / "group_curves.png")
    atomic_write_json(out / "compare.json", doc)
    atomic_write_text(out / "compare.md", markdown(runs, pairs, doc["note"], doc))
    return doc


def add_parser(sub) -> None:
    p = sub.add_parser("compare", help="overlay any finished runs and tabulate how far apart they are",
                       description="Overlays the curves of finished runs (frameworks, seeds, precisions) and writes "
                                   "<out>/compare.json, compare.md and curves.png: per pair of runs the max |loss "
                                   "difference| over the evaluations both made, final and best test accuracy "
                                   "differences, examples/s and compile-time ratios. With --by, the runs form groups "
                                   "and each pair of groups gets per-metric intervals, a t-test and a verdict "
                                   "(equivalent, different or inconclusive) against --margin.")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders, or globs such as 'results/mlp-toy/*-s0'")
    p.add_argument("--out", default="results/compare", help="where to write (default: results/compare)")
    p.add_argument("--by", metavar="KEY", help="group the runs by this setting (framework, precision, lr, any key of "
                                               "config.json's config or of summary.json) and compare the groups")
    p.add_argument("--margin", type=float, metavar="POINTS",
                   help=f"with --by: the equivalence margin for test accuracy, in accuracy points "
                        f"(default {groups.DEFAULT_MARGIN:g})")
    p.add_argument("--speed-margin", type=float, metavar="FRACTION",
                   help=f"with --by: the equivalence margin for examples/s and wall time, a fraction of the "
                        f"groups' mean (default {groups.SPEED_MARGIN:g})")
    p.set_defaults(func=cmd_compare)


def compare_runs(run_dirs: list[Path] | list[dict], out: Path, by: str | None = None, margin: float | None = None,
                 speed_margin: float | None = None) -> dict:
    """:func:`compare` (of run folders, or of runs in memory as :func:`load_run` gives them), then one
    line with the largest |loss difference| (what a run of several frameworks ends with) and, with
    ``by``, a line per pair of groups with the final test accuracy's verdict."""
    loaded = all(isinstance(r, dict) for r in run_dirs)
    doc = (compare_loaded(list(run_dirs), Path(out), by, margin, speed_margin) if loaded else
           compare(run_dirs, Path(out), by, margin, speed_margin))
    if doc["note"]:
        print(f"note: {doc['note']}", file=sys.stderr)
    worst = max((p["max_abs_loss_diff"] for p in doc["pairs"] if p["max_abs_loss_diff"] is not None), default=None)
    print(f"compare: {len(doc['runs'])} runs, {len(doc['pairs'])} pairs, max |loss diff| "
          f"{_fmt(worst, '.3e')}; {Path(out) / 'compare.md'}")
    for c in doc.get("grouped", {}).get("comparisons", []):
        acc = c["metrics"]["final_test_accuracy"]
        if acc is not None:
            print(f"  final test accuracy, {c['b']} minus {c['a']}: {stats.verdict_line(acc, ' points')}")
    return doc


def cmd_compare(args) -> int:
    check_grouping(args.by, args.margin, args.speed_margin)  # before the runs are read: the cheaper error first
    compare_runs(expand(args.runs), Path(args.out), args.by, args.margin, args.speed_margin)
    return 0
