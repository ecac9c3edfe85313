"""``compare --by KEY``: runs grouped by one setting, each metric summarised per group, each pair of
groups compared with a two-sample test and an equivalence verdict (``train.analysis.stats``).

Margins: the accuracy metrics are judged against ``margin`` accuracy points (default
:data:`DEFAULT_MARGIN`); examples/s and the whole-run wall time against ``speed_margin`` (default
:data:`SPEED_MARGIN`) times the mean of the two groups' means; the lowest test loss and the epoch it
came at have no natural margin and are tested for a difference only.

Pairing: two groups are compared run by run (the paired t-test) when they hold the same seeds, each
once, and the runs of one seed agree on every setting but the grouping key: the same initial weights
and the same batches, as a framework's twins have. Otherwise Welch's t-test compares the groups.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np

from train.analysis import stats
from train.errors import UsageError

DEFAULT_MARGIN = 1.0    # accuracy points: a difference a reader of a cross-framework study would not act on
SPEED_MARGIN = 0.10     # of the groups' mean: timing noise between processes on one machine is of this order

# key, what it is, unit, which margin judges it ("accuracy", "speed" or None: a difference test only)
METRICS = (
    ("final_test_accuracy", "final test accuracy", "%", "accuracy"),
    ("best_test_accuracy", "best test accuracy", "%", "accuracy"),
    ("lowest_test_loss", "lowest test loss", "", None),
    ("lowest_test_loss_at", "when the test loss was lowest", "", None),
    ("examples_per_s", "examples/s (training steps; seeds trained together: their program's)", "", "speed"),
    ("wall_time_s", "whole-run wall time with compile (seeds trained together: per seed)", "s", "speed"),
)


def x_axis(runs: list[dict]) -> str:
    """What the curves run over: epochs where every run's metrics record them, else steps."""
    return "epoch" if all("epoch" in r["rows"][0] for r in runs if r["rows"]) else "step"


def run_config(run: dict) -> dict:
    """The run's config.json ({} when it has none or it cannot be read), read once."""
    if "config_json" not in run:
        try:
            run["config_json"] = json.loads((Path(run["path"]) / "config.json").read_text())
        except (OSError, ValueError, KeyError, TypeError):
            run["config_json"] = {}
        if not isinstance(run["config_json"], dict):
            run["config_json"] = {}
    return run["config_json"]


_MISSING = object()


def setting(run: dict, key: str):
    """A run's value of ``key``: config.json's top level (experiment, framework), else summary.json's
    (precision, seed, dataset...), else the experiment's settings in config.json's "config"."""
    cfg = run_config(run)
    for where in (cfg, run["summary"], cfg.get("config") if isinstance(cfg.get("config"), dict) else {}):
        v = where.get(key, _MISSING)
        if v is not _MISSING and not isinstance(v, (dict, list)):
            return v
    return _MISSING


def _settings(run: dict, by: str) -> tuple:
    """Everything that fixes a run's weights and batches, but the grouping key (and the run's seed)."""
    cfg = run_config(run)
    inner = {k: v for k, v in (cfg.get("config") or {}).items() if k not in (by, "seed")}
    return run["summary"].get("experiment"), json.dumps(inner, sort_keys=True, default=str)


def group_runs(runs: list[dict], by: str) -> list[tuple[object, list[dict]]]:
    """The runs by their value of ``by``, in order of first appearance; a run without it, or a single
    group, is a UsageError."""
    groups: dict = {}
    for r in runs:
        v = setting(r, by)
        if v is _MISSING:
            raise UsageError(f"--by {by}: {r['path']} has no setting {by!r} (in config.json or summary.json)")
        groups.setdefault(json.dumps(v), (v, []))[1].append(r)
    if len(groups) < 2:
        (v, _), = groups.values()
        raise UsageError(f"--by {by}: every run has {by} = {v}; there is nothing to compare between groups")
    return list(groups.values())


def twins(ga: list[dict], gb: list[dict], by: str) -> list[tuple[dict, dict]]:
    """Pairs of runs, one from each group, with the same seed and the same settings but ``by``."""
    out = []
    for ra in ga:
        seed = setting(ra, "seed")
        for rb in gb:
            if seed is not _MISSING and setting(rb, "seed") == seed and _settings(ra, by) == _settings(rb, by):
                out.append((ra, rb))
    return out


def pairing(ga: list[dict], gb: list[dict], pairs: list[tuple[dict, dict]]) -> bool:
    """Whether the groups are compared run by run: every run in exactly one twin pair."""
    ids_a, ids_b = [id(a) for a, _ in pairs], [id(b) for _, b in pairs]
    return (len(pairs) >= 2 and sorted(ids_a) == sorted(map(id, ga)) and sorted(ids_b) == sorted(map(id, gb))
            and len(set(ids_a)) == len(ids_a) and len(set(ids_b)) == len(ids_b))


def metric_values(run: dict, x: str) -> dict:
    """The run's value of each metric (accuracies in percentage points); None where it has none.

    Seeds trained together in one program (``trained_together`` K) share its time: their speed is
    the program's (K seeds' examples over the shared time), their wall time a K-th of it, so they
    compare fairly with seeds trained in turn, which take K whole runs."""
    s, tests = run["summary"], [r for r in run["rows"] if r.get("split") == "test"]
    lowest = min(tests, key=lambda r: r["loss"]) if tests else None
    pct = lambda v: None if v is None else 100 * v  # noqa: E731
    k = s.get("trained_together") or 1
    speed, wall = s.get("examples_per_s"), s.get("wall_time_s")
    return {"final_test_accuracy": pct((s.get("final") or {}).get("test_accuracy")),
            "best_test_accuracy": pct(s.get("best_test_accuracy")),
            "lowest_test_loss": lowest and lowest["loss"], "lowest_test_loss_at": lowest and lowest.get(x),
            "examples_per_s": speed and speed * k, "wall_time_s": wall and wall / k}


def _margin(kind: str | None, margin: float, speed_margin: float, ma: float, mb: float) -> float | None:
    if kind == "accuracy":
        return margin
    if kind == "speed":
        return speed_margin * (abs(ma) + abs(mb)) / 2 or None
    return None


def compare_two(ga: dict, gb: dict, pairs: list, paired: bool, margin: float, speed_margin: float) -> dict:
    """Every metric of group ``gb`` against group ``ga`` (b minus a)."""
    out = {}
    for key, _, _, kind in METRICS:
        if paired:
            got = [(a["_metrics"][key], b["_metrics"][key]) for a, b in pairs]
            va, vb = [p[0] for p in got], [p[1] for p in got]
        else:
            va, vb = ga["values"][key], gb["values"][key]
        if not va or not vb or None in va or None in vb:
            out[key] = None   # a run without this figure: nothing to compare
            continue
        m = _margin(kind, margin, speed_margin, float(np.mean(va)), float(np.mean(vb)))
        out[key] = {**stats.compare_groups(va, vb, m, paired=paired),
                    "relative_margin": speed_margin if kind == "speed" else None}
    return out


def mean_curves(runs: list[dict], x: str) -> dict:
    """The group's test loss and accuracy per ``x``: mean and the Student-t 95% interval of the mean,
    over the evaluations every run of the group made."""
    common = set.intersection(*({r.get(x) for r in run["rows"] if r.get("split") == "test"} for run in runs))
    xs = sorted(v for v in common if v is not None)
    out = {"x": xs}
    for key in ("loss", "accuracy"):
        table = np.array([[next(r[key] for r in run["rows"] if r.get("split") == "test" and r.get(x) == v)
                           for v in xs] for run in runs], np.float64).reshape(len(runs), len(xs))
        mean, n = table.mean(0), len(runs)
        if n >= 2:
            from scipy import stats as sp  # on first use: its import is slow, most commands never need it
            half = sp.t.ppf(1 - stats.ALPHA / 2, n - 1) * table.std(0, ddof=1) / np.sqrt(n)
            band = [(mean - half).tolist(), (mean + half).tolist()]
        else:
            band = [None, None]
        out[f"test_{key}"] = {"mean": mean.tolist(), "ci_low": band[0], "ci_high": band[1]}
    return out


def analyse(runs: list[dict], by: str, margin: float | None, speed_margin: float | None) -> dict:
    """compare.json's grouped part: the groups with each metric described, every pair of groups
    compared, and the twin runs' exact per-pair comparison (by the caller, from ``twins``)."""
    margin = DEFAULT_MARGIN if margin is None else margin
    speed_margin = SPEED_MARGIN if speed_margin is None else speed_margin
    x = x_axis(runs)
    grouped = group_runs(runs, by)
    groups = []
    for value, members in grouped:
        for r in members:
            r["_metrics"] = metric_values(r, x)
        values = {k: [r["_metrics"][k] for r in members] for k, *_ in METRICS}
        groups.append({"name": str(value), "value": value, "runs": [r["label"] for r in members],
                       "seeds": [None if (s := setting(r, "seed")) is _MISSING else s for r in members],
                       "values": values, "curves": mean_curves(members, x),
                       "metrics": {k: None if None in v else stats.describe(v) for k, v in values.items()}})
    comparisons, twin_pairs = [], []
    for (i, (_, ma)), (j, (_, mb)) in itertools.combinations(enumerate(grouped), 2):
        pairs = twins(ma, mb, by)
        twin_pairs += pairs
        paired = pairing(ma, mb, pairs)
        comparisons.append({"a": groups[i]["name"], "b": groups[j]["name"], "paired": paired,
                            "pairing": _pairing_why(paired, pairs, ma, mb),
                            "metrics": compare_two(groups[i], groups[j], pairs, paired, margin, speed_margin)})
    metrics = {k: {"label": label + (f" ({x})" if k == "lowest_test_loss_at" else ""), "unit": unit,
                   "margin": {"accuracy": margin, "speed": f"{speed_margin:g} of the groups' mean"}.get(kind)}
               for k, label, unit, kind in METRICS}
    return {"by": by, "margin": margin, "speed_margin": speed_margin, "alpha": stats.ALPHA, "x": x,
            "metrics": metrics, "groups": groups, "comparisons": comparisons, "_twins": twin_pairs}


def _pairing_why(paired: bool, pairs: list, ga: list, gb: list) -> str:
    if paired:
        return (f"paired t-test: both groups ran seeds {', '.join(str(setting(a, 'seed')) for a, _ in pairs)} "
                f"with the same settings otherwise (same weights, same batches)")
    return (f"Welch's t-test: the groups are not twins run for run ({len(pairs)} of {len(ga)} and {len(gb)} runs "
            f"share a seed and every other setting)")


def _num(v, unit: str = "") -> str:
    if v is None:
        return "–"
    if unit == "%" or abs(v) < 1000:
        return f"{v:.4g}" if unit != "%" else f"{v:.2f}"
    return f"{v:,.0f}"


def _ci(ci, unit: str = "", sign: bool = False) -> str:
    if ci is None:
        return "–"
    f = (lambda v: f"{v:+.3g}" if unit != "%" else f"{v:+.2f}") if sign else (lambda v: _num(v, unit))
    return f"{f(ci[0])} to {f(ci[1])}"


def markdown(doc: dict) -> list[str]:
    """compare.md's grouped part: per-group tables, then each pair of groups' tests and verdicts in words."""
    g = doc["grouped"]
    pct = f"{100 * (1 - g['alpha']):.0f}%"
    L = [f"Runs grouped by **{g['by']}**: "
         + ", ".join(f"{grp['name']} (n = {len(grp['runs'])})" for grp in g["groups"]) + ".", "",
         f"Margins: ±{g['margin']:g} accuracy points for the accuracies (percentages below); ±{g['speed_margin']:g} "
         f"of the two groups' mean for examples/s and wall time; the lowest test loss and when it came are tested "
         f"for a difference only. Intervals are Student-t {pct} intervals of the mean; **equivalent** means "
         f"TOST (two one-sided t-tests at {g['alpha']:g}) puts the difference inside the margin (its "
         f"{100 * (1 - 2 * g['alpha']):.0f}% interval lies inside), **different** that the t-test finds a "
         f"difference (p < {g['alpha']:g}), **inconclusive** neither, with a rough count of the seeds per group "
         f"that would settle it.", "", "![each run, with the group mean and interval](groups.png)", "",
         f"![mean test curves per group, bands: {pct} interval of the mean](group_curves.png)", "",
         f"| metric | {g['by']} | n | mean | std | {pct} CI | min | max |", "|---|---|---|---|---|---|---|---|"]
    for key, m in g["metrics"].items():
        for grp in g["groups"]:
            d = grp["metrics"][key]
            if d is not None:
                L.append(f"| {m['label']}{' (' + m['unit'] + ')' if m['unit'] else ''} | {grp['name']} | {d['n']} | "
                         f"{_num(d['mean'], m['unit'])} | {_num(d['std'], m['unit'])} | {_ci(d['ci'], m['unit'])} "
                         f"| {_num(d['min'], m['unit'])} | {_num(d['max'], m['unit'])} |")
    for c in g["comparisons"]:
        L += _comparison_md(c, g["metrics"], pct)
    return L


def _comparison_md(c: dict, metrics: dict, pct: str) -> list[str]:
    L = ["", f"## {c['b']} minus {c['a']}", "", c["pairing"] + ".", "",
         f"| metric | difference | {pct} CI | test p | margin | TOST p | verdict | seeds to settle |",
         "|---|---|---|---|---|---|---|---|"]
    words = []
    for key, r in c["metrics"].items():
        if r is None:
            continue
        unit = metrics[key]["unit"]
        margin = "–" if r["margin"] is None else f"±{_num(r['margin'], unit)}"
        tost = "–" if r["tost_p_value"] is None else f"{r['tost_p_value']:.3g}"
        p = "–" if r["p_value"] is None else f"{r['p_value']:.3g}"
        L.append(f"| {metrics[key]['label']} | {r['diff']:+.4g} | {_ci(r['ci'], unit, sign=True)} | {p} | {margin} "
                 f"| {tost} | **{r['verdict']}** | {r['seeds_needed'] or '–'} |")
        unit = {"%": " points", "": ""}.get(unit, f" {unit}")
        words.append(f"- {metrics[key]['label']}: " + stats.verdict_line(r, unit))
    return L + [""] + words
