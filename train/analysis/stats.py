"""How sure a comparison of seeds is: per-group intervals, two-sample tests, equivalence verdicts.

Everything statistical is ``scipy.stats``: Student-t intervals, Welch's two-sample t-test (or the
paired test when both groups ran the same seeds), and two one-sided tests (TOST) against a margin.
A verdict is one of:

- ``equivalent``: TOST rejects "the difference is at least ``margin``" at level ``alpha`` (the
  ``1 - 2 alpha`` interval of the difference lies inside ``(-margin, margin)``);
- ``different``: the two-sample test rejects "no difference" at level ``alpha``;
- ``inconclusive``: neither, with a rough count of the seeds per group that would settle it.

Equivalence is checked first: a difference that is significant but smaller than the margin is
practically nil, which is the question a cross-framework study asks.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Sequence

import numpy as np


class _OnFirstUse:
    """A module imported when first used: scipy.stats' import is a large share of a command's start-up,
    and most commands never compare groups."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str):
        return getattr(importlib.import_module(self._name), attr)


stats, special = _OnFirstUse("scipy.stats"), _OnFirstUse("scipy.special")

ALPHA = 0.05
POWER = 0.8   # what "seeds needed" aims for: this chance of a settled verdict if the observed effect is real


def describe(values: Sequence[float], confidence: float = 1 - ALPHA,
             bounds: tuple[float, float] | None = None) -> dict:
    """n, mean, sample std (ddof 1) and the Student-t interval of the mean; std and interval are None for n < 2.

    ``bounds``: the range the quantity cannot leave (an accuracy's [0, 1]). A t-interval of a few
    bimodal seeds can reach past it; the interval is then cut to the range and ``clipped`` says so."""
    x = np.asarray(values, dtype=np.float64)
    n = len(x)
    if n == 0:
        raise ValueError("describe: no values")
    out = {"n": n, "mean": float(x.mean()), "std": None, "ci": None, "min": float(x.min()), "max": float(x.max())}
    if n >= 2:
        out["std"] = float(x.std(ddof=1))
        if out["std"] == 0:
            out["ci"] = [out["mean"], out["mean"]]
        else:
            ci = stats.ttest_1samp(x, 0.0).confidence_interval(confidence)
            out["ci"] = [float(ci.low), float(ci.high)]
    if bounds is not None and out["ci"] is not None:
        lo, hi = out["ci"]
        out["clipped"] = lo < bounds[0] or hi > bounds[1]
        out["ci"] = [max(lo, bounds[0]), min(hi, bounds[1])]
    return out


def _degenerate(a: np.ndarray, b: np.ndarray, paired: bool) -> bool:
    """True when the spread the test needs is exactly zero (identical runs), where t is undefined.
    The range, not deviations from a mean: the mean of equal floats need not equal them."""
    return np.ptp(b - a) == 0 if paired else np.ptp(a) == 0 and np.ptp(b) == 0


def _exact(out: dict, diff: float, margin: float | None) -> dict:
    """The verdict of groups without spread: the difference is known exactly."""
    inside = abs(diff) < margin if margin is not None else diff == 0
    out.update(ci=[diff, diff], equivalence_ci=[diff, diff], p_value=0.0 if diff else 1.0,
               tost_p_value=None if margin is None else 0.0 if inside else 1.0,
               verdict="equivalent" if inside else "different",
               why="no spread between runs: the difference is exact")
    return out


def _tost(a: np.ndarray, b: np.ndarray, margin: float, paired: bool) -> float:
    """TOST's p-value: two one-sided tests of the difference against -margin and +margin (shifting a
    sample leaves its spread, so Welch's degrees of freedom, unchanged)."""
    if paired:
        lo = stats.ttest_rel(b + margin, a, alternative="greater").pvalue
        hi = stats.ttest_rel(b - margin, a, alternative="less").pvalue
    else:
        lo = stats.ttest_ind(b + margin, a, equal_var=False, alternative="greater").pvalue
        hi = stats.ttest_ind(b - margin, a, equal_var=False, alternative="less").pvalue
    return float(max(lo, hi))


def compare_groups(a: Sequence[float], b: Sequence[float], margin: float | None, *, paired: bool = False,
                   alpha: float = ALPHA) -> dict:
    """How group ``b`` differs from group ``a`` (b minus a): the difference of means with its
    ``1 - alpha`` interval (``ci``) and the ``1 - 2 alpha`` one TOST amounts to (``equivalence_ci``),
    the two-sample test's p-value, TOST's p-value against ``margin`` and the verdict.
    ``paired``: element i of a and of b share a seed (same weights, same batches).
    ``margin`` None: a metric without an equivalence margin, tested for a difference only (its
    verdict is ``different`` or ``inconclusive``, or ``equivalent`` for identical runs)."""
    if margin is not None and not margin > 0:
        raise ValueError(f"margin must be positive, got {margin}")
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if paired and len(a) != len(b):
        raise ValueError("paired groups must have the same length")
    diff = float(b.mean() - a.mean())
    out = {"test": "paired t" if paired else "Welch t", "n_a": len(a), "n_b": len(b), "diff": diff, "ci": None,
           "equivalence_ci": None, "p_value": None, "tost_p_value": None, "margin": margin, "alpha": alpha,
           "seeds_needed": None}
    if min(len(a), len(b)) < 2:
        out.update(verdict="inconclusive", why="fewer than 2 runs in a group: no spread to test against",
                   seeds_needed=2)
        return out
    if _degenerate(a, b, paired):   # every run identical within its group (or every pair equal)
        return _exact(out, diff, margin)
    test = stats.ttest_rel(b, a) if paired else stats.ttest_ind(b, a, equal_var=False)
    ci, eq = test.confidence_interval(1 - alpha), test.confidence_interval(1 - 2 * alpha)
    out.update(ci=[float(ci.low), float(ci.high)], equivalence_ci=[float(eq.low), float(eq.high)],
               p_value=float(test.pvalue), tost_p_value=None if margin is None else _tost(a, b, margin, paired))
    p, tost = out["p_value"], out["tost_p_value"]
    if tost is not None and tost < alpha:
        also = f"; the {out['test']} test finds a difference (p = {p:.3g}), smaller than the margin" if p < alpha else ""
        out.update(verdict="equivalent", why=f"TOST p = {tost:.3g} < {alpha}: the difference is within "
                                             f"±{margin:g}{also}")
    elif p < alpha:
        out.update(verdict="different", why=f"{out['test']} p = {p:.3g} < {alpha}")
    else:
        out.update(verdict="inconclusive",
                   why=f"{out['test']} p = {p:.3g}" + ("" if tost is None else f", TOST p = {tost:.3g}") +
                       (f": neither below {alpha}" if tost is not None else f" not below {alpha}, and no margin "
                                                                            f"to test equivalence against"))
        out["seeds_needed"] = seeds_needed(a, b, margin, paired=paired, alpha=alpha)
    return out


def power(n: int, diff: float, sd: float, margin: float | None, *, paired: bool = False,
          alpha: float = ALPHA) -> float:
    """The chance that ``n`` runs per group settle the comparison if ``diff`` and ``sd`` (the runs'
    spread; of the differences when paired) are the truth: TOST's chance of "equivalent" when
    |diff| < margin, else the two-sided t-test's chance of "different". The t distribution's
    quantiles with a normal statistic: the spread's own uncertainty is left out.
    (``scipy.special``'s stdtrit and ndtr are ``stats.t.ppf`` and ``stats.norm.cdf`` without their
    argument checking, which the search in :func:`seeds_needed` would spend most of its time on.)"""
    df, k = (n - 1, 1.0) if paired else (2 * n - 2, 2.0)
    se = sd * math.sqrt(k / n)
    diff = abs(diff)
    if margin is not None and diff < margin:
        q = special.stdtrit(df, 1 - alpha)
        return float(max(0.0, special.ndtr((margin - diff) / se - q) + special.ndtr((margin + diff) / se - q) - 1))
    q = special.stdtrit(df, 1 - alpha / 2)
    return float(special.ndtr(diff / se - q) + special.ndtr(-diff / se - q))


def seeds_needed(a: np.ndarray, b: np.ndarray, margin: float | None, *, paired: bool = False,
                 alpha: float = ALPHA, target: float = POWER) -> int | None:
    """Roughly how many runs per group would settle an inconclusive comparison: the least n whose
    :func:`power` reaches ``target`` if the observed difference and spread are the true ones
    (a difference inside the margin: TOST's "equivalent"; outside it, or without a margin: the
    t-test's "different"). None where none would: no difference and no margin, or a difference
    sitting on the margin. A rough figure: the spread of a few seeds is itself uncertain."""
    diff = float(np.mean(b) - np.mean(a))
    sd = float(np.std(np.subtract(b, a), ddof=1)) if paired else math.sqrt((np.var(a, ddof=1) + np.var(b, ddof=1)) / 2)
    if sd == 0 or (margin is None and diff == 0):
        return None
    hi = 2
    while power(hi, diff, sd, margin, paired=paired, alpha=alpha) < target:
        hi *= 2
        if hi > 10**7:
            return None
    lo = hi // 2   # power rises with n: the least n reaching the target lies in (lo, hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if power(mid, diff, sd, margin, paired=paired, alpha=alpha) >= target else (mid, hi)
    return max(hi, len(a) + 1, len(b) + 1)


def _signed(v: float) -> str:
    return f"{v:+.3g}" if 0 < abs(v) < 1 else f"{v:+.2f}"


def verdict_line(c: dict, unit: str = "", scale: float = 1.0) -> str:
    """One line for a report, e.g. 'equivalent: +0.12 points (95% CI -0.31 to +0.55), n = 3 vs 3 (paired t
    p = 0.52), margin ±0.5 points'."""
    pct = f"{100 * (1 - c['alpha']):.0f}%"
    ci = "" if c["ci"] is None else f" ({pct} CI {_signed(scale * c['ci'][0])} to {_signed(scale * c['ci'][1])})"
    n = f"n = {c['n_a']} vs {c['n_b']}"
    test = f" ({c['test']} p = {c['p_value']:.2g})" if c["p_value"] is not None and c["ci"] != [c["diff"]] * 2 else ""
    margin = "" if c["margin"] is None else f", margin ±{scale * c['margin']:.3g}{unit}"
    exact = f"; {c['why']}" if c["p_value"] is None or not test else ""
    more = f"; about {c['seeds_needed']} seeds per group would settle it" if c["seeds_needed"] else ""
    return f"{c['verdict']}: {_signed(scale * c['diff'])}{unit}{ci}, {n}{test}{margin}{exact}{more}"
