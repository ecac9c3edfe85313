"""Why a record is as fast as it is: its work per step, achieved and peak FLOP/s, memory, compile
breakdown and the spread of its windows, as the second table of ``bench.md``."""

from __future__ import annotations

from train.bench.records import Record, fmt_time
from train.bench.report import steady

_MB = 1e6


def _num(v, fmt: str, scale: float = 1.0) -> str:
    return "-" if v is None else format(v / scale, fmt)


def _memory(r: Record) -> str:
    m = r.memory
    if not m:
        return "-"
    return (f"{m['argument_bytes'] / _MB:,.1f} / {m['output_bytes'] / _MB:,.1f} / "
            f"{m['temp_bytes'] / _MB:,.1f}")


def _compile(r: Record) -> str:
    e = r.extra
    if "xla_compile_s" not in e:
        return "-"
    return (f"{e.get('trace_s', 0):.2f} / {e.get('lower_s', 0):.2f} / {e['xla_compile_s']:.2f}"
            f" ({e.get('persistent_cache', '?')})")


def _peak(r: Record) -> str:
    if r.peak_flops_per_s is None:
        return "-"
    source = r.extra.get("peak_source", "")
    return f"{r.peak_flops_per_s / 1e12:.3g} ({'measured' if source.startswith('measured') else 'data sheet'})"


def work_table(records: list[Record]) -> list[str]:
    """One row per measured record (the toy whole runs left out)."""
    lines = ["| suite | framework | mode | precision | devices | batch | step: median (IQR) | "
             "GFLOP/step | TFLOP/s | peak TFLOP/s | utilisation | GB accessed/step | "
             "program MB: args / out / temp | device peak MB | trace / lower / XLA s (cache) |",
             "|---|---|---|---|---:|---:|---|---:|---:|---|---:|---:|---|---:|---|"]
    for r in steady(records):
        iqr = (f" ({fmt_time(r.step_s_q1)}-{fmt_time(r.step_s_q3)})"
               if r.step_s_q1 is not None else "")
        util = "-" if r.utilisation is None else f"{100 * r.utilisation:.2f}%"
        lines.append(
            f"| {r.suite} | {r.framework} | {r.mode} | {r.precision} | {r.devices} | "
            f"{r.batch_size} | {fmt_time(r.step_s)}{iqr} | {_num(r.flops_per_step, '.3g', 1e9)} | "
            f"{_num(r.flops_per_s, '.3g', 1e12)} | {_peak(r)} | {util} | "
            f"{_num(r.bytes_accessed_per_step, '.3g', 1e9)} | {_memory(r)} | "
            f"{_num(r.peak_memory_bytes, ',.0f', _MB)} | {_compile(r)} |")
    return lines


INTRO = (
    "Work, memory and compilation. GFLOP/step: XLA's cost analysis of the compiled step (PyTorch "
    "and NumPy rows: the JAX program's count for the same model and batch; convolutions count "
    "in-bounds taps only); TFLOP/s = GFLOP/step / step time; peak: the device's dense peak at the "
    "row's precision from a data-sheet table, or on a CPU the fastest 1024x1024 matmul measured in "
    "this run; utilisation = achieved / peak. Program MB: XLA's memory analysis of the compiled "
    "program (donated arguments are also counted as outputs); device peak: the backend's peak "
    "memory in use (process-wide; PyTorch: max_memory_allocated) where it reports one. Compile: "
    "seconds of tracing, lowering to StableHLO and XLA compiling, and whether JAX's persistent "
    "cache was off, hit or missed.")


KERNELS_INTRO = (
    "Kernels per step, from each JAX program's optimised HLO (train.bench.hlo_stats): for a fused "
    "period the loop body, for a one-step program the entry; on a GPU each is a launch (CPU: a "
    "thunk). Collectives: all-reduces and the like per step. The fused-cb-* rows are the fused "
    "period compiled with XLA's command-buffer options (train.bench.jax_variants); their first "
    "window's parameters are checked against fused's, within fused's own run-to-run difference.")


def kernels_table(records: list[Record]) -> list[str]:
    """One row per JAX record with an HLO count; empty when there is none."""
    rows = [r for r in steady(records) if r.framework == "jax" and "kernels" in r.extra.get("hlo_ops", {})]
    if not rows:
        return []
    lines = ["", KERNELS_INTRO, "",
             "| suite | mode | precision | devices | batch | step | vs fused | kernels/step | fusions | "
             "library calls | copies / transposes | collectives | exact vs fused |",
             "|---|---|---|---:|---:|---|---:|---:|---:|---|---|---:|---|"]
    for r in rows:
        h = r.extra["hlo_ops"]
        fused = next((f for f in rows if (f.suite, f.mode, f.precision, f.batch_size, f.devices)
                      == (r.suite, "fused", r.precision, r.batch_size, r.devices)), None)
        vs = "-" if fused is None or r is fused else f"{fused.step_s / r.step_s:.2f}x"
        calls = ", ".join(f"{k} {v}" for k, v in sorted(h["custom_call_targets"].items())) or "-"
        ex = r.extra.get("exact_vs_fused", {})
        exact = "-" if not ex else ex["verdict"] + (
            f" ({ex['max_abs_diff']:.2g}, noise {ex['noise_floor']:.2g})" if "max_abs_diff" in ex else "")
        lines.append(f"| {r.suite} | {r.mode} | {r.precision} | {r.devices} | {r.batch_size} | "
                     f"{fmt_time(r.step_s)} | {vs} | {h['kernels']} | {h['fusions']} | {calls} | "
                     f"{h['copies']} / {h['transposes']} | {h['collectives']} | {exact} |")
    return lines
