"""Timed windows, run interleaved; paired ratios; the time budget.

Each window syncs the device inside the timed region, so async dispatch never looks free; medians
shrug off a slowed window. Runners are timed interleaved and ratios paired by round, so a change in
the machine's load hits both sides of a ratio.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from train.bench.records import Record, error_text, line, skipped
from train.bench.workloads import Workload


@dataclass
class Runner:
    """A prepared measurement: its record (compile / first-call time already filled in) and one
    timed window, a callable that runs ``steps_per_window`` steps and returns when they are done."""

    record: Record
    window: Callable[[], Any]
    after: Callable[[Record], None] | None = None   # e.g. read peak device memory after the windows


def time_interleaved(fns: Sequence[Callable[[], Any]], n_windows: int, *,
                     steps_per_window: int | Sequence[int] = 1, warmup: int = 1,
                     clock: Callable[[], float] = time.perf_counter
                     ) -> list[tuple[float, list[float]]]:
    """Round-robin: ``warmup`` untimed rounds, then ``n_windows`` rounds of one window each.
    Returns per function ``(first_call_s, per-step times of its timed windows)``."""
    steps = ([steps_per_window] * len(fns) if isinstance(steps_per_window, int)
             else list(steps_per_window))
    if n_windows < 1 or warmup < 0 or len(steps) != len(fns) or any(k < 1 for k in steps):
        raise ValueError("need n_windows >= 1, steps_per_window >= 1 (one per function) and "
                         "warmup >= 0")
    first: list[float | None] = [None] * len(fns)
    times: list[list[float]] = [[] for _ in fns]
    for rnd in range(warmup + n_windows):
        for j, fn in enumerate(fns):
            t = clock()
            fn()
            d = clock() - t
            if first[j] is None:
                first[j] = d
            if rnd >= warmup:
                times[j].append(d / steps[j])
    return list(zip(first, times))


def finish(rec: Record, windows: list[float]) -> Record:
    """Fill the steady-state fields of ``rec`` from its per-window step times."""
    rec.window_step_s = [float(w) for w in windows]
    rec.windows = len(windows)
    rec.step_s = float(statistics.median(windows))
    rec.step_s_q1, rec.step_s_q3 = quartiles(windows)
    rec.examples_per_s = rec.batch_size / rec.step_s if rec.step_s > 0 else None
    return rec


def quartiles(xs: Sequence[float]) -> tuple[float, float]:
    """First and third quartiles (linear interpolation; one value: that value twice)."""
    q1, q3 = np.percentile(np.asarray(xs, float), [25, 75])
    return float(q1), float(q3)


def round_ratios(base: Record, other: Record) -> list[float]:
    """Per-round ratios base window / other window (empty when the windows do not pair up)."""
    b, o = base.window_step_s, other.window_step_s
    if b and len(b) == len(o) and all(v > 0 for v in o):
        return [x / y for x, y in zip(b, o)]
    return []


def ratio_range(base: Record, other: Record) -> list[float] | None:
    """[lowest, highest] per-round ratio of a paired ratio; None when unpaired."""
    rs = round_ratios(base, other)
    return [round(min(rs), 3), round(max(rs), 3)] if rs else None


def paired_ratio(base: Record, other: Record) -> float:
    """How many times faster ``other`` is than ``base``: median of per-round ratios (else ratio of medians)."""
    rs = round_ratios(base, other)
    return float(statistics.median(rs)) if rs else base.step_s / other.step_s


def measure(items: Sequence[Runner | Record], windows: int, warmup: int, log=print) -> list[Record]:
    """Time one suite's runners interleaved; a runner that raises is dropped and reported as skipped."""
    runners = [r for r in items if isinstance(r, Runner)]
    failed: dict[int, str] = {}

    def guarded(j, r):
        def run():
            if j in failed:
                return
            try:
                r.window()
            except Exception as e:  # noqa: BLE001 - one failing runner must not end the bench
                failed[j] = error_text(e)
        return run

    results = time_interleaved([guarded(j, r) for j, r in enumerate(runners)], windows,
                               steps_per_window=[r.record.steps_per_window for r in runners],
                               warmup=warmup)
    out = []
    for item in items:
        rec = (item if isinstance(item, Record)
               else _timed(item, runners.index(item), results, failed))
        out.append(rec)
        log(line(rec))
    return out


def _timed(runner: Runner, j: int, results, failed: dict[int, str]) -> Record:
    rec = runner.record
    if j in failed:
        return skipped(rec.suite, rec.framework, rec.mode, f"failed: {failed[j]}",
                       precision=rec.precision, devices=rec.devices, batch_size=rec.batch_size)
    first, times = results[j]
    rec.extra["first_window_s"] = round(first, 4)
    finish(rec, times)
    if runner.after:
        runner.after(rec)
    return rec


@dataclass
class Budget:
    """``--time-budget``: no runner is prepared once ``seconds`` have passed since ``start``, so a
    run on a borrowed machine ends near a known time; what was left out says so."""

    seconds: float | None = None
    start: float = field(default_factory=time.perf_counter)

    def spent(self) -> str:
        if self.seconds is None or time.perf_counter() - self.start < self.seconds:
            return ""
        return f"not run: --time-budget {self.seconds:g} s was spent before it started"


def prepare(fn: Callable[[], Runner], wl: Workload, framework: str, mode: str, precision: str,
            devices: int = 1, budget: Budget | None = None) -> Runner | Record:
    """Build (and compile) one runner; a failure, or a spent budget, becomes a skipped record."""
    why = budget.spent() if budget else ""
    if not why:
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - e.g. torch.compile failing on this platform
            why = f"failed: {error_text(e)}"
    return skipped(wl.suite, framework, mode, why, precision=precision, devices=devices,
                   batch_size=wl.batch)
