"""Curves, not only points: throughput and utilisation against batch size, and data-parallel
scaling against device count (strong: the same global batch split over N devices; weak: N times
the batch on N devices), each as rows for ``bench.json``/``bench.md`` and as a figure.

Scaling efficiency is throughput(N) / (N x throughput(1)), throughput in examples per second: 1
is perfect scaling. Each data-parallel path (``pmap``, ``shard_map``, ``jit``) has its own curves,
from its own records; the one-device point is that path on one device, so the efficiency measures
scaling and not the path's own cost.
"""

from __future__ import annotations

from pathlib import Path

from train.analysis.plots import plt
from train.bench.records import PARALLEL_MODES, Record
from train.bench.report import steady
from train.engine.results import save_figure


def batch_curves(records: list[Record]) -> list[dict]:
    """Per (suite, framework, mode, precision, devices) measured at two or more batch sizes: each
    batch's examples/s (with the interquartile range of its windows) and utilisation."""
    groups: dict[tuple, list[Record]] = {}
    for r in steady(records):
        if r.extra.get("scaling") != "weak":   # the weak-scaling points belong to their own curve
            groups.setdefault((r.suite, r.framework, r.mode, r.precision, r.devices), []).append(r)
    out = []
    for (suite, fw, mode, prec, dev), rs in groups.items():
        if len({r.batch_size for r in rs}) < 2:
            continue
        pts = [{"batch": r.batch_size, "examples_per_s": r.examples_per_s,
                "examples_per_s_iqr": _iqr_throughput(r), "utilisation": r.utilisation}
               for r in sorted(rs, key=lambda r: r.batch_size)]
        out.append({"suite": suite, "framework": fw, "mode": mode, "precision": prec,
                    "devices": dev, "points": pts})
    return out


def _iqr_throughput(r: Record) -> list[float] | None:
    if not (r.step_s_q1 and r.step_s_q3):
        return None
    return [r.batch_size / r.step_s_q3, r.batch_size / r.step_s_q1]


def scaling_curves(records: list[Record]) -> list[dict]:
    """Per data-parallel path, suite, precision and one-device batch b with records on several device
    counts: the strong curve (batch b on N devices) and the weak one (batch N*b on N devices)."""
    par = [r for r in steady(records) if r.framework == "jax" and r.mode in PARALLEL_MODES]
    out = []
    for one in [r for r in par if r.devices == 1]:
        for kind, batch_of in (("strong", lambda n: one.batch_size),
                               ("weak", lambda n: n * one.batch_size)):
            pts = sorted(((r.devices, r) for r in par
                          if (r.suite, r.precision, r.mode) == (one.suite, one.precision, one.mode)
                          and r.batch_size == batch_of(r.devices)), key=lambda p: p[0])
            if len(pts) < 2:
                continue
            out.append({"suite": one.suite, "precision": one.precision, "kind": kind, "mode": one.mode,
                        "batch_per_device_1": one.batch_size,
                        "points": [{"devices": n, "batch": r.batch_size,
                                    "examples_per_s": r.examples_per_s,
                                    "efficiency": r.examples_per_s / (n * one.examples_per_s)}
                                   for n, r in pts]})
    return out


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def markdown(batch: list[dict], scaling: list[dict]) -> list[str]:
    """The curves as tables (empty when nothing was measured at several batches or devices)."""
    lines: list[str] = []
    if batch:
        lines += ["", "Throughput and utilisation against batch size (examples/s; interquartile "
                  "range of the windows in brackets):", "",
                  "| suite | framework | mode | precision | devices | batch | examples/s | "
                  "utilisation |", "|---|---|---|---|---:|---:|---:|---:|"]
        for c in batch:
            for p in c["points"]:
                iqr = p["examples_per_s_iqr"]
                rng = f" ({iqr[0]:,.0f}-{iqr[1]:,.0f})" if iqr else ""
                lines.append(f"| {c['suite']} | {c['framework']} | {c['mode']} | {c['precision']} "
                             f"| {c['devices']} | {p['batch']} | {p['examples_per_s']:,.0f}{rng} | "
                             f"{_pct(p['utilisation'])} |")
    if scaling:
        lines += ["", "Data-parallel scaling, per path; efficiency = throughput(N) / (N x "
                  "throughput(1)) of the same path:", "",
                  "| suite | precision | path | scaling | devices | global batch | examples/s | "
                  "efficiency |", "|---|---|---|---|---:|---:|---:|---:|"]
        for c in scaling:
            for p in c["points"]:
                lines.append(f"| {c['suite']} | {c['precision']} | {c.get('mode', 'pmap')} | "
                             f"{c['kind']} | {p['devices']} | "
                             f"{p['batch']} | {p['examples_per_s']:,.0f} | "
                             f"{p['efficiency']:.2f} |")
    return lines


def plot_batch(curves: list[dict], path: Path) -> None:
    """Per suite: examples/s (top) and utilisation (bottom) against batch size, a line per
    framework, mode and precision."""
    suites = list(dict.fromkeys(c["suite"] for c in curves))
    fig, axes = plt.subplots(2, len(suites), figsize=(5 * len(suites), 7), squeeze=False)
    for j, suite in enumerate(suites):
        top, bottom = axes[0][j], axes[1][j]
        for c in [c for c in curves if c["suite"] == suite]:
            label = f"{c['framework']} {c['mode']} {c['precision']} d{c['devices']}"
            xs = [p["batch"] for p in c["points"]]
            top.plot(xs, [p["examples_per_s"] for p in c["points"]], "o-", label=label)
            us = [p["utilisation"] for p in c["points"]]
            if all(u is not None for u in us):
                bottom.plot(xs, [100 * u for u in us], "o-", label=label)
        for ax in (top, bottom):
            ax.set_xscale("log", base=2)
            ax.set_xlabel("batch size")
            ax.grid(alpha=0.3, which="both")
        top.set_yscale("log")
        top.set_ylabel("examples/s")
        top.set_title(f"{suite}: throughput vs batch")
        bottom.set_ylabel("utilisation of peak FLOP/s (%)")
        top.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def plot_scaling(curves: list[dict], path: Path) -> None:
    """Examples/s against device count with the ideal line (left), efficiency (right): a line per
    path, suite, precision and kind (a colour per path, suite and precision; strong solid, weak
    dashed)."""
    fig, (ax, ax_eff) = plt.subplots(1, 2, figsize=(10, 4))
    series = list(dict.fromkeys((c.get("mode", "pmap"), c["suite"], c["precision"]) for c in curves))
    for c in curves:
        key = (c.get("mode", "pmap"), c["suite"], c["precision"])
        color = f"C{series.index(key) % 10}"
        label = f"{key[0]}: {c['suite']} {c['precision']} {c['kind']} (b{c['batch_per_device_1']} on 1)"
        style = "o-" if c["kind"] == "strong" else "s--"
        ns = [p["devices"] for p in c["points"]]
        ax.plot(ns, [p["examples_per_s"] for p in c["points"]], style, color=color, label=label)
        one = c["points"][0]["examples_per_s"] / (ns[0] * c["points"][0]["efficiency"])
        ax.plot(ns, [n * one for n in ns], ":", color=color, alpha=0.6)
        ax_eff.plot(ns, [p["efficiency"] for p in c["points"]], style, color=color, label=label)
    ax.set_xlabel("devices")
    ax.set_ylabel("examples/s (dotted: ideal)")
    ax.set_title("data-parallel scaling, per path")
    ax_eff.axhline(1.0, color="k", lw=0.8, ls="--")
    ax_eff.set_xlabel("devices")
    ax_eff.set_ylabel("efficiency = thr(N) / (N x thr(1))")
    ax_eff.set_ylim(0, max([1.2, *(1.1 * p["efficiency"] for c in curves for p in c["points"])]))
    for a in (ax, ax_eff):
        a.set_xscale("log", base=2)
        a.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
