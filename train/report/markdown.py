"""Markdown pieces the report's sections share: numbers, figures, the runs' table."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from train.engine.results import read_jsonl


def numpy_vs_jax(compare: dict) -> dict:
    """A toy set's NumPy-vs-JAX pair in its compare.json: max |loss difference|, |final test accuracy difference|."""
    fw = {r["label"]: r["framework"] for r in compare["runs"]}
    (pair,) = [p for p in compare["pairs"] if {fw[p["a"]], fw[p["b"]]} == {"numpy", "jax"}]
    return {"max_abs_loss_diff": pair["max_abs_loss_diff"],
            "final_test_accuracy_diff": abs(pair["final_test_accuracy_diff"])}


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _f(x, nd=3) -> str:
    return "–" if x is None else f"{x:.{nd}f}"


def _fig(out: Path, path: Path, alt: str, *, image: bool = True) -> str:
    """Markdown for a figure under ``out``: shown inline (``image``) or as a link; flagged if missing."""
    rel = os.path.relpath(path, out)
    if not path.exists():
        return f"*(missing figure: {rel})*"
    return f"{'!' if image else ''}[{alt}]({rel})"


def _summary_row(label: str, s: dict) -> str:
    f = s["final"]
    return (f"| {label} | {_pct(f['train_accuracy'])} | {_pct(f['test_accuracy'])} | {_pct(s['best_test_accuracy'])} "
            f"| {_f(f['train_loss'])} | {_f(f['test_loss'])} | {s['wall_time_s']:.1f} | {s['compile_time_s']:.1f} "
            f"| {s['examples_per_s']:,.0f} | {s['devices']} {s['platform']} |")


HEADER = ("| run | train acc | test acc | best test acc | train loss | test loss | wall s | compile s "
          "| train ex/s | devices |\n|---|---|---|---|---|---|---|---|---|---|")


def _best_epoch(rows_path: Path) -> tuple[int | None, int | None]:
    """(epoch of best test accuracy, epoch of lowest test loss) from a run's metrics.jsonl."""
    try:
        test = [r for r in read_jsonl(rows_path) if r["split"] == "test"]
    except OSError:
        return None, None
    if not test:
        return None, None
    best = max(test, key=lambda r: r["accuracy"])
    low = min(test, key=lambda r: r["loss"])
    return best.get("epoch"), low.get("epoch")


def median_grad_ratios(ratios: list[tuple[str, int, float]]) -> dict[tuple[str, int], tuple[float, int]]:
    """(cell, T) -> (median over seeds of dL/dh_1 / dL/dh_T at initialisation, number of seeds).

    The one value per (cell, T) that the report's gradient table and its verdict note both quote.
    """
    by: dict[tuple[str, int], list[float]] = {}
    for cell, t, q in ratios:
        by.setdefault((cell, t), []).append(q)
    return {k: (float(np.median(v)), len(v)) for k, v in by.items()}
