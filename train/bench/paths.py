"""The data-parallel paths side by side (``--parallel pmap,shard_map,jit``): per path and device
count its speed against pmap's and against its own one-device speed (paired by round), its compile
stages, its memory per device and its collectives per step; ``bench.json``'s ratios and a table of
``bench.md``.

Ratios pair two records only when they ran in the same process: records of the child process with
simulated devices (``train.bench.scaling``) were timed interleaved with each other, not with this
process's.
"""

from __future__ import annotations

from train.bench.records import PARALLEL_MODES, Record, fmt_time
from train.bench.report import steady
from train.bench.timing import paired_ratio, ratio_range

_MB = 1e6


def _same_process(a: Record, b: Record) -> bool:
    return a.extra.get("process") == b.extra.get("process")


def _cell(records: list[Record], r: Record, mode: str, devices: int) -> Record | None:
    """The record of ``mode`` on ``devices`` at ``r``'s suite, precision and batch, timed in ``r``'s process."""
    return next((x for x in steady(records) if x.framework == "jax" and x.mode == mode and x.devices == devices
                 and (x.suite, x.precision, x.batch_size) == (r.suite, r.precision, r.batch_size)
                 and _same_process(x, r)), None)


def _rows(records: list[Record]) -> list[Record]:
    """The data-parallel records, and plain jit (fused) beside them for reference."""
    par = [r for r in steady(records) if r.framework == "jax" and r.mode in PARALLEL_MODES]
    keys = {(r.suite, r.precision, r.batch_size) for r in par}
    fused = [r for r in steady(records) if (r.framework, r.mode) == ("jax", "fused")
             and (r.suite, r.precision, r.batch_size) in keys]
    order = {m: i for i, m in enumerate(("fused", *PARALLEL_MODES))}
    return sorted([*fused, *par], key=lambda r: (r.suite, r.precision, r.batch_size, order[r.mode], r.devices))


def add_ratios(records: list[Record], ratios: dict) -> None:
    """Into each ratios row (suite/precision/batch) with a shard_map or jit record, and each record's
    ``extra``: ``path_vs_pmap`` ("<path> d<N>": throughput over pmap's on N devices; fused: over
    pmap on one), ``path_scaling`` (path -> {N: throughput on N devices over on one, same batch}),
    each with its ``*_range`` (lowest and highest per-round ratio)."""
    rows = _rows(records)
    if not any(r.mode in PARALLEL_MODES[1:] for r in rows):
        return   # pmap alone: its ratios are pmap_vs_jit and pmap_scaling, as ever
    for r in rows:
        d = ratios.get(f"{r.suite}/{r.precision}/b{r.batch_size}")
        if d is None:
            continue
        name = f"{r.mode} d{r.devices}"
        pm = _cell(records, r, "pmap", r.devices)
        if pm is not None and r.mode != "pmap":
            r.extra["vs_pmap"] = d.setdefault("path_vs_pmap", {})[name] = round(paired_ratio(pm, r), 3)
            d.setdefault("path_vs_pmap_range", {})[name] = ratio_range(pm, r)
        one = _cell(records, r, r.mode, 1)
        if r.mode in PARALLEL_MODES and r.devices > 1 and one is not None:
            r.extra["scaling_vs_1"] = d.setdefault("path_scaling", {}).setdefault(r.mode, {})[str(r.devices)] = \
                round(paired_ratio(one, r), 3)
            d.setdefault("path_scaling_range", {}).setdefault(r.mode, {})[str(r.devices)] = ratio_range(one, r)


def _compile(r: Record) -> str:
    st = r.extra.get("compile_stages") or {}
    if "compile" not in st:
        return "-"
    if "trace+lower" in st:
        return f"{st['trace+lower']:.2f} (trace+lower) / {st['compile']:.2f}"
    return f"{st.get('trace', 0):.2f} / {st.get('lower', 0):.2f} / {st['compile']:.2f}"


def _memory(r: Record) -> str:
    m = r.memory
    if not m:
        return "-"
    return " / ".join(f"{m[k] / _MB:,.2f}" for k in ("argument_bytes", "output_bytes", "temp_bytes"))


def _collectives(r: Record) -> str:
    h = r.extra.get("hlo_ops") or {}
    if "collectives" not in h:
        return "-"
    kinds = ", ".join(f"{k} {n}" for k, n in (h.get("collective_ops") or {}).items())
    return f"{h['collectives']}" + (f" ({kinds})" if kinds else "")


def _ratio(v, rng) -> str:
    return "-" if v is None else f"{v:.2f}x" + (f" ({rng[0]:.2f}-{rng[1]:.2f})" if rng else "")


INTRO = (
    "Data-parallel paths (`--parallel`): fused is plain jit on one device; pmap, shard_map and jit "
    "are the trainer's paths (train/backends/jax_parallel.py), each timed on every --devices count. "
    "vs pmap: throughput over pmap's on as many devices (fused: over pmap on one); vs 1 device: "
    "throughput over the same path's on one device at the same global batch (strong scaling); both "
    "medians of per-round ratios, lowest and highest in brackets, and only between records timed "
    "in the same process. Compile: seconds of the trainer's own trace, lower and XLA-compile calls "
    "for its training program (pmap's `lower` traces, so its first figure is both). Memory: XLA's "
    "memory analysis of the compiled program, per device: arguments / outputs / temporaries (MB). "
    "Collectives: all-reduces and the like per training step, read from the optimised HLO.")


def table(records: list[Record], ratios: dict) -> list[str]:
    """One row per data-parallel record (and fused beside them); empty when none ran."""
    rows = _rows(records)
    if not any(r.mode in PARALLEL_MODES for r in rows):
        return []
    lines = ["", INTRO, "",
             "| suite | precision | batch | path | devices | step | examples/s | vs pmap | vs 1 device | "
             "compile s: trace / lower / XLA | MB per device: args / out / temp | collectives/step | where |",
             "|---|---|---:|---|---:|---:|---:|---:|---:|---|---|---|---|"]
    for r in rows:
        d = ratios.get(f"{r.suite}/{r.precision}/b{r.batch_size}", {})
        name = f"{r.mode} d{r.devices}"
        vs_pmap = _ratio(d.get("path_vs_pmap", {}).get(name), d.get("path_vs_pmap_range", {}).get(name))
        if r.mode == "pmap":
            vs_pmap = "1"
        n = str(r.devices)
        if "path_scaling" in d:
            vs_one = _ratio(d["path_scaling"].get(r.mode, {}).get(n), d["path_scaling_range"].get(r.mode, {}).get(n))
        else:   # pmap alone: its scaling is report.compute_ratios' pmap_scaling
            vs_one = _ratio(d.get("pmap_scaling", {}).get(n) if r.mode == "pmap" else None,
                            d.get("pmap_scaling_range", {}).get(n))
        lines.append(f"| {r.suite} | {r.precision} | {r.batch_size} | {r.mode} | {r.devices} | {fmt_time(r.step_s)} | "
                     f"{r.examples_per_s:,.0f} | {vs_pmap} | {vs_one} | {_compile(r)} | {_memory(r)} | "
                     f"{_collectives(r)} | {r.extra.get('process', 'this process')} |")
    return lines
