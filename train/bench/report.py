"""What a run's records say: paired ratios, the batch summary, acceptance checks, ``bench.md`` and
``bench.png``."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from train.analysis.plots import plt
from train.bench.records import Record, fmt_time
from train.bench.suites import RECIPE_BATCH, SUITES
from train.bench.timing import paired_ratio, ratio_range
from train.engine.results import save_figure

# GPU targets: JAX fused bf16 examples/s and, for the CNN, its speed over the best PyTorch record
# at the same batch; each at the recipe batch and at the throughput-maximising batch.
GPU_TARGETS = {"cnn-cifar": (200_000, 3.0), "rnn-palindrome": (500_000, None)}
# Short names for the settings column: a key's text, or for non-boolean values "text value".
_SETTING_TEXT = {"channels_last": "channels_last", "cudnn_benchmark": "cudnn.benchmark",
                 "fused_adamw": "fused AdamW", "tf32": "TF32", "autocast": "autocast",
                 "compile_mode": "compile", "matmul_precision": "matmul", "scan_unroll": "unroll",
                 "xla_backend_optimization_level": "XLA opt level",
                 "compiled_optimizer": "compiled optimizer step", "implementation": "RNN as"}


def steady(records: list[Record]) -> list[Record]:
    """The measured steady-state records (not skipped, not whole runs)."""
    return [r for r in records if not r.skipped and r.step_s and not r.mode.startswith("whole-run")]


def find(records, suite, framework, mode, precision="fp32", devices=1,
         batch: int | None = None) -> Record | None:
    """The first measured record of this cell (at ``batch``, or at any batch when None)."""
    for r in steady(records):
        if (r.suite, r.framework, r.mode, r.precision, r.devices) == \
                (suite, framework, mode, precision, devices) and batch in (None, r.batch_size):
            return r
    return None


def baseline_for(records: list[Record], suite: str, precision: str, gpu: bool,
                 batch: int | None = None) -> Record | None:
    """NumPy on CPU (where a NumPy model exists), else PyTorch eager; on a GPU, PyTorch eager."""
    order = [("torch", "eager")] if gpu else [("numpy", "step"), ("torch", "eager")]
    for fw, mode in order:
        for prec in (precision, "fp32"):
            r = find(records, suite, fw, mode, prec, batch=batch)
            if r:
                return r
    return None


def best_torch(records: list[Record], suite: str, batch: int,
               precision: str | None = None) -> Record | None:
    """The fastest PyTorch candidate that ran for ``suite`` at ``batch`` (and ``precision``; None:
    any): "best PyTorch"."""
    rs = [r for r in steady(records) if (r.suite, r.framework, r.batch_size) == (suite, "torch", batch)
          and precision in (None, r.precision)]
    return max(rs, key=lambda r: r.examples_per_s, default=None)


def torch_name(r: Record) -> str:
    """A PyTorch record's candidate: its mode, and its RNN implementation where the mode does not
    name it (``compile (loop)``)."""
    impl = r.settings.get("implementation")
    return f"{r.mode} ({impl})" if impl and not r.mode.startswith(impl) else r.mode


def compute_ratios(records: list[Record], gpu: bool) -> dict:
    """Per suite, precision and batch: speed vs the baseline of every record (also written to
    its ``extra``), best PyTorch, pmap(1 device)/jit, pmap N devices / 1, fused / step-loop."""
    out: dict[str, dict] = {}
    for r in steady(records):
        base = baseline_for(records, r.suite, r.precision, gpu, r.batch_size)
        key = f"{r.suite}/{r.precision}/b{r.batch_size}"
        if key not in out:
            out[key] = {"baseline": f"{base.framework} {base.mode}" if base else None,
                        "speedup": {}, **_torch_row(records, r.suite, r.precision, r.batch_size)}
        d = out[key]
        if base:
            r.extra["speedup_vs_baseline"] = round(paired_ratio(base, r), 3)
            r.extra["speedup_range"] = ratio_range(base, r)
            d["speedup"][f"{r.framework} {r.mode} d{r.devices}"] = r.extra["speedup_vs_baseline"]
            d.setdefault("speedup_range", {})[f"{r.framework} {r.mode} d{r.devices}"] = \
                r.extra["speedup_range"]
        if r.framework == "jax":
            _jax_ratios(records, r, d)
    return out


def _torch_row(records: list[Record], suite: str, precision: str, batch: int) -> dict:
    """Best PyTorch of one row: its candidate, speed, JAX fused's speed over it, and the candidates
    that did not run, with why."""
    best = best_torch(records, suite, batch, precision)
    row: dict = {"best_torch": None if best is None else {
        "name": torch_name(best), "mode": best.mode, "examples_per_s": best.examples_per_s,
        "implementation": best.settings.get("implementation")}}
    row["torch_not_run"] = {r.mode: r.note for r in records
                            if r.skipped and (r.suite, r.framework, r.precision, r.batch_size)
                            == (suite, "torch", precision, batch)}
    jf = find(records, suite, "jax", "fused", precision, batch=batch)
    if best and jf:
        row["jax_fused_vs_best_torch"] = round(paired_ratio(best, jf), 3)
        row["jax_fused_vs_best_torch_range"] = ratio_range(best, jf)
    # JAX at its best on one device: fused where it fuses, else one step per call (a CPU convnet).
    ran = [find(records, suite, "jax", m, precision, batch=batch) for m in ("fused", "step-loop")]
    jax_best = max(filter(None, ran), key=lambda r: r.examples_per_s, default=None)
    if best and jax_best:
        row["jax_best_vs_best_torch"] = {"mode": jax_best.mode, "ratio": round(paired_ratio(best, jax_best), 3),
                                         "range": ratio_range(best, jax_best)}
    return row


def _jax_ratios(records: list[Record], r: Record, d: dict) -> None:
    same = functools.partial(find, records, r.suite, "jax", precision=r.precision,
                             batch=r.batch_size)
    if r.mode == "pmap" and r.devices == 1 and (jit := same("fused")):
        # Throughput of the pmap path as a fraction of plain jit's (same fused steps, 1 device).
        r.extra["pmap_vs_jit"] = d["pmap_vs_jit"] = round(paired_ratio(jit, r), 3)
        d["pmap_vs_jit_range"] = ratio_range(jit, r)
        d["pmap_vs_jit_of_medians"] = round(jit.step_s / r.step_s, 3)
    if r.mode == "pmap" and r.devices > 1 and (one := same("pmap", devices=1)):
        # Data-parallel scaling: throughput on N devices over throughput on one (same global batch).
        d.setdefault("pmap_scaling", {})[str(r.devices)] = round(paired_ratio(one, r), 3)
        d.setdefault("pmap_scaling_range", {})[str(r.devices)] = ratio_range(one, r)
    if r.mode == "fused" and (loop := same("step-loop")):
        d["fused_vs_step_loop"] = round(paired_ratio(loop, r), 3)
        d["fused_vs_step_loop_range"] = ratio_range(loop, r)


def batch_summary(records: list[Record]) -> list[dict]:
    """Per suite, framework, mode, precision and devices: throughput at the recipe batch (None
    when not measured) and at the measured batch that maximises it."""
    groups: dict[tuple, list[Record]] = {}
    for r in steady(records):
        groups.setdefault((r.suite, r.framework, r.mode, r.precision, r.devices), []).append(r)
    out = []
    for (suite, fw, mode, prec, dev), rs in groups.items():
        best = max(rs, key=lambda r: r.examples_per_s)
        recipe = next((r for r in rs if r.batch_size == RECIPE_BATCH[suite]), None)
        out.append({"suite": suite, "framework": fw, "mode": mode, "precision": prec,
                    "devices": dev, "batches": sorted(r.batch_size for r in rs),
                    "recipe_batch": RECIPE_BATCH[suite],
                    "recipe_examples_per_s": recipe.examples_per_s if recipe else None,
                    "best_batch": best.batch_size, "best_examples_per_s": best.examples_per_s})
    return out


def _gpu_checks(records: list[Record], add) -> None:
    for suite, (target, vs_torch) in GPU_TARGETS.items():
        rs = [r for r in steady(records) if (r.suite, r.framework, r.mode, r.precision, r.devices)
              == (suite, "jax", "fused", "bf16", 1)]
        if not rs:
            continue
        best = max(rs, key=lambda r: r.examples_per_s)
        recipe = next((r for r in rs if r.batch_size == RECIPE_BATCH[suite]), None)
        for r in [x for x in (recipe, best if best is not recipe else None) if x]:  # once if same
            which = "+".join(n for n, x in (("recipe", recipe), ("best", best)) if x is r)
            at = f"at batch {r.batch_size} ({which})"
            add(f"{suite}: JAX fused bf16 examples/s {at}", r.examples_per_s, f">= {target:,}",
                r.examples_per_s >= target)
            if vs_torch is None:
                continue
            t = best_torch(records, suite, r.batch_size)
            if t is None:
                add(f"{suite}: JAX fused bf16 / best PyTorch {at}: no PyTorch record at this batch",
                    None, f">= {vs_torch:g}", False)
                continue
            v = paired_ratio(t, r)
            add(f"{suite}: JAX fused bf16 / best PyTorch (torch {torch_name(t)} {t.precision}, "
                f"{t.examples_per_s:,.0f}/s) {at}", v, f">= {vs_torch:g}", v >= vs_torch)


def acceptance_checks(records: list[Record], gpu: bool) -> list[dict]:
    """The speed targets, evaluated from this run's numbers: JAX against NumPy and PyTorch on the
    toy and CIFAR MLPs, the toy whole run, the pmap path's cost and, on a GPU, ``GPU_TARGETS``.
    Absent measurements are left out, except a missing PyTorch record that a GPU speed ratio
    needs: that check fails, visibly."""
    checks = []

    def add(name, value, target, ok):
        checks.append({"check": name, "value": None if value is None else round(value, 4),
                       "target": target, "pass": bool(ok)})

    np_toy, jf_toy = find(records, "mlp-toy", "numpy", "step"), find(records, "mlp-toy", "jax", "fused")
    if np_toy and jf_toy:
        v = paired_ratio(np_toy, jf_toy)
        add("mlp-toy: JAX fused speed / NumPy", v, ">= 5", v >= 5)
    for r in records:
        whole = r.mode.startswith("whole-run") and r.total_s
        if (r.suite, r.framework) == ("mlp-toy", "jax") and whole:
            add(f"mlp-toy: JAX {r.mode} (build + 1,500 steps + compile)", r.total_s, "< 1 s",
                r.total_s < 1)
    jf = find(records, "mlp-cifar", "jax", "fused")
    bt = jf and best_torch(records, "mlp-cifar", jf.batch_size, jf.precision)
    for name, other in ((f"best PyTorch ({bt and torch_name(bt)})", bt),
                        ("numpy step", jf and find(records, "mlp-cifar", "numpy", "step",
                                                   batch=jf.batch_size))):
        if other:
            v = paired_ratio(other, jf)
            add(f"mlp-cifar: JAX fused speed / {name}", v, "> 1", v > 1)
    pm = jf and find(records, "mlp-cifar", "jax", "pmap", batch=jf.batch_size)
    if pm:
        v = paired_ratio(jf, pm)
        add("mlp-cifar: pmap (1 device) throughput / jit", v, ">= 0.90", v >= 0.90)
    if gpu:
        _gpu_checks(records, add)
    return checks


def settings_text(settings: dict) -> str:
    """``{"channels_last": True, "fused_adamw": False, "compile_mode": "default"}`` ->
    "channels_last, no fused AdamW, compile default": true flags by name, false ones only where
    they are a choice someone would look for (fused AdamW, TF32), absent or None ones not at all."""
    parts = []
    for k, v in settings.items():
        name = _SETTING_TEXT.get(k, k)
        if v is True:
            parts.append(name)
        elif v is False and k in ("fused_adamw", "tf32"):
            parts.append(f"no {name}")
        elif v is not None and v is not False:   # 0 is a value (an optimisation level)
            parts.append(f"{name} {v}")
    return ", ".join(parts)


_INTRO = (
    "step = median over timed windows (device synchronised inside each window); the runners of a "
    "suite and batch are timed interleaved, round by round, and speedup = median over rounds of "
    "baseline window time / this window time (baseline: NumPy on CPU where it exists, else "
    "PyTorch eager; on a GPU, PyTorch eager). Precision: fp32 is full fp32 in both frameworks "
    "(JAX compiled under matmul precision highest, PyTorch with TF32 off); tf32 is fp32 storage "
    "with TF32 matmuls and convolutions (JAX's default on a GPU, PyTorch with TF32 on); bf16 is "
    "bf16 compute (bf16 JAX models, PyTorch bf16 autocast). On a CPU, tf32 computes "
    "what fp32 does. Whole-run rows: total seconds for the 1,500-step toy run in a fresh process. "
    "Ratios in brackets: the lowest and highest per-round ratio. Best PyTorch: the fastest of its "
    "candidates (modes eager, compile*, nn.RNN-*) that ran in this run at the row's suite, "
    "precision and batch; those that did not run are named, their reasons in the records table.")


def markdown(records: list[Record], ratios: dict, checks: list[dict], machine: dict,
             batches: list[dict] | None = None) -> str:
    title = (f"# Training-step benchmark ({machine.get('platform')}, {machine.get('device_kind')}, "
             f"{machine.get('cpu_count')} CPU cores, load average {_load(machine)})")
    lines = [title, "", _INTRO, "", *_records_table(records), "", *_ratios_table(ratios)]
    if batches:
        lines += ["", *_batches_table(batches)]
    if checks:
        lines += ["", "| check | value | target | pass |", "|---|---:|---|---|"]
        lines += [f"| {c['check']} | {c['value']} | {c['target']} | "
                  f"{'yes' if c['pass'] else 'NO'} |" for c in checks]
    return "\n".join(lines) + "\n"


def _records_table(records: list[Record]) -> list[str]:
    lines = ["| suite | framework | mode | precision | devices | batch | compile (s) | step | "
             "examples/s | speedup | settings | note |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in records:
        head = (f"| {r.suite} | {r.framework} | {r.mode} | {r.precision} | {r.devices} | "
                f"{r.batch_size} ")
        if r.skipped:
            lines.append(head + f"| - | - | - | - | | skipped: {r.note} |")
            continue
        comp = f"{r.compile_s:.3f}" if r.compile_s is not None else "-"
        step = f"total {r.total_s:.3f} s" if r.total_s is not None else fmt_time(r.step_s)
        sp = r.extra.get("speedup_vs_baseline")
        sp_text = "" if sp is None else f"{sp:.2f}x{_range(r.extra.get('speedup_range'))}"
        lines.append(head + f"| {comp} | {step} | {r.examples_per_s:,.0f} | "
                     f"{sp_text} | {settings_text(r.settings)} | "
                     f"{_note(r)} |")
    return lines


def _ratios_table(ratios: dict) -> list[str]:
    lines = ["| suite/precision/batch | baseline | best PyTorch | JAX best / best PyTorch | "
             "pmap/jit (1 device) | fused/step-loop | pmap N devices / 1 |",
             "|---|---|---|---:|---:|---:|---|"]
    for key, d in ratios.items():
        pj, fs, jb = d.get("pmap_vs_jit"), d.get("fused_vs_step_loop"), d.get("jax_best_vs_best_torch")
        sc = ", ".join(f"{n}: {v:.2f}x{_range(d.get('pmap_scaling_range', {}).get(n))}"
                       for n, v in d.get("pmap_scaling", {}).items()) or "-"
        lines.append(f"| {key} | {d['baseline'] or '-'} | {_best_text(d)} | "
                     f"{_jax_best_text(jb)} | "
                     f"{'-' if pj is None else f'{pj:.3f}'}{_range(d.get('pmap_vs_jit_range'))} | "
                     f"{'-' if fs is None else f'{fs:.2f}x'}"
                     f"{_range(d.get('fused_vs_step_loop_range'))} | {sc} |")
    return lines


def _jax_best_text(jb: dict | None) -> str:
    """``2.00x (0.50-3.00)``, JAX's mode named where it is not fused: ``0.98x (0.90-1.10) step-loop``."""
    if jb is None:
        return "-"
    return f"{jb['ratio']:.2f}x{_range(jb['range'])}" + ("" if jb["mode"] == "fused" else f" {jb['mode']}")


def _best_text(d: dict) -> str:
    """``compile (loop), 12,345/s; not run: compile-cudagraphs`` (why: the records table)."""
    b, missing = d.get("best_torch"), d.get("torch_not_run") or {}
    text = f"{b['name']}, {b['examples_per_s']:,.0f}/s" if b else ("none ran" if missing else "-")
    return text + (f"; not run: {', '.join(missing)}" if missing else "")


def _range(r) -> str:
    """" (lo-hi)": the range of the per-round ratios behind a median ratio."""
    return f" ({r[0]:.2f}-{r[1]:.2f})" if r else ""


def _batches_table(batches: list[dict]) -> list[str]:
    lines = ["| suite | framework | mode | precision | devices | batches measured | examples/s at "
             "the recipe batch | best batch | examples/s at the best batch |",
             "|---|---|---|---|---:|---|---:|---:|---:|"]
    for b in batches:
        rec = b["recipe_examples_per_s"]
        lines.append(f"| {b['suite']} | {b['framework']} | {b['mode']} | {b['precision']} | "
                     f"{b['devices']} | {', '.join(map(str, b['batches']))} | "
                     f"{'-' if rec is None else f'{rec:,.0f}'} ({b['recipe_batch']}) | "
                     f"{b['best_batch']} | {b['best_examples_per_s']:,.0f} |")
    return lines


def _note(r: Record) -> str:
    e = r.extra
    if r.mode.startswith("whole-run"):
        text = (f"build {e['build_s']:.2f} + run {e['run_s']:.2f} s "
                f"(loop bookkeeping {e['loop_overhead_s']:.2f})")
        if r.framework != "jax":
            return text
        return (f"{text}; trace {e['trace_s']:.2f}, lower {e['lower_s']:.2f}, XLA "
                f"{e['backend_compile_s']:.2f} s over {e['programs_compiled']} programs, "
                f"{e['cache_hits']} cache hits")
    extras = [f"pmap/jit = {e['pmap_vs_jit']:.2f}"] if "pmap_vs_jit" in e else []
    if e.get("compile_counters"):
        counts = ", ".join(f"{k} {v}" for k, v in e["compile_counters"].items())
        extras.append(f"torch.compile: {counts}")
    return "; ".join([r.note, *extras] if r.note else extras)


def _load(machine: dict) -> str:
    a, b = machine.get("loadavg_start"), machine.get("loadavg_end")
    return f"{a[0]:.1f} at start, {b[0]:.1f} at end" if a and b else "unknown"


def plot(records: list[Record], path: Path, gpu: bool) -> None:
    """One panel per suite: speed relative to the suite's baseline, log scale, 1 = baseline."""
    suites = [s for s in SUITES
              if any(r.suite == s and "speedup_vs_baseline" in r.extra for r in steady(records))]
    n = max(1, len(suites))
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 4.2), squeeze=False)
    for ax, suite in zip(axes[0], suites):
        _panel(ax, records, suite, gpu)
    if not suites:
        axes[0][0].text(0.5, 0.5, "no baseline measured", ha="center", va="center")
        axes[0][0].set_axis_off()
    fig.suptitle("Training-step speed relative to "
                 + ("PyTorch eager" if gpu else "NumPy (or PyTorch eager)"))
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def _panel(ax, records: list[Record], suite: str, gpu: bool) -> None:
    colors = {"numpy": "tab:gray", "jax": "tab:blue", "torch": "tab:orange"}
    rows = [r for r in steady(records) if r.suite == suite and "speedup_vs_baseline" in r.extra]
    batches = sorted({r.batch_size for r in rows})
    labels = [f"{r.framework} {r.mode}\n{r.precision} d{r.devices}"
              + (f" b{r.batch_size}" if len(batches) > 1 else "") for r in rows]
    vals = [r.extra["speedup_vs_baseline"] for r in rows]
    # Bars grow from 1x (the baseline): up when faster, down when slower, on a log scale.
    bars = ax.bar(range(len(rows)), [v - 1.0 for v in vals], bottom=1.0,
                  color=[colors.get(r.framework, "k") for r in rows])
    for b, v in zip(bars, vals):
        ax.annotate(f"{v:.2g}x", (b.get_x() + b.get_width() / 2, v), ha="center",
                    va="bottom" if v >= 1 else "top", fontsize=7)
    ax.axhline(1.0, color="k", lw=0.8, ls="--")
    ax.set_yscale("log")
    ax.set_ylim(min([*vals, 1.0]) / 1.6, max([*vals, 1.0]) * 1.6)
    ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}x"))
    # Minor ticks labelled at 2x and 5x of each decade.
    ax.yaxis.set_minor_formatter(plt.FuncFormatter(
        lambda v, _: f"{v:g}x" if v > 0 and round(v / 10 ** np.floor(np.log10(v)), 6) in (2, 5)
        else ""))
    ax.set_xticks(range(len(rows)), labels, rotation=60, ha="right", fontsize=7)
    base = baseline_for(records, suite, "fp32", gpu)
    ax.set_title(f"{suite} (batch {', '.join(map(str, batches))}; each vs the baseline at its "
                 f"batch)", fontsize=9)
    ax.set_ylabel(f"speed vs {base.framework} {base.mode} (x)" if base else "speed (x)")
    ax.grid(axis="y", alpha=0.3, which="both")
