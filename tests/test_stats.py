"""train.analysis.stats: intervals, tests and verdicts against scipy.stats computed by hand, and the
verdicts' error rates over many seeded draws against the rates the tests promise."""

import math

import numpy as np
import pytest
from scipy import stats as sp
from tolerances import U64

from train.analysis import stats

ALPHA = stats.ALPHA


def binomial_bound(p: float, draws: int) -> float:
    """Four standard deviations of a rate measured over ``draws`` independent draws of chance ``p``:
    a correct implementation exceeds it once in ~30,000 runs of the test (normal tail beyond 4 sigma)."""
    return 4 * math.sqrt(p * (1 - p) / draws)


# The statistics are a few dozen float64 operations on n <= 12 values: sums of n terms (error n u
# relative to the terms' magnitudes), a square root, a ratio, then a t quantile or tail whose condition
# number stays below ~100 for the |t| < 10 met here. 1e4 u bounds that with room.
REL = 1e4 * U64


def close(x: float, y: float, scale: float) -> bool:
    return abs(x - y) <= REL * scale


def welch_by_hand(a, b, confidence):
    """Welch's interval of mean(b) - mean(a), its statistic and degrees of freedom, from the formulas."""
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    d = np.mean(b) - np.mean(a)
    return sp.t.interval(confidence, df, loc=d, scale=se), d, se, df


@pytest.mark.parametrize("seed", range(5))
def test_describe_is_the_student_t_interval(seed):
    x = np.random.default_rng(seed).normal(3.0, 2.0, 3 + seed)
    d = stats.describe(x)
    lo, hi = sp.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=sp.sem(x))
    scale = abs(d["mean"]) + (hi - lo)
    assert d["n"] == len(x) and close(d["mean"], np.mean(x), scale) and close(d["std"], np.std(x, ddof=1), scale)
    assert close(d["ci"][0], lo, scale) and close(d["ci"][1], hi, scale)
    assert (d["min"], d["max"]) == (x.min(), x.max())


@pytest.mark.parametrize("seed", range(5))
def test_welch_interval_p_value_and_tost_equal_scipy(seed):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(0.0, 1.0, 4 + seed), rng.normal(0.7, 2.0, 6)
    margin = 1.5
    c = stats.compare_groups(a, b, margin)
    (lo, hi), d, se, df = welch_by_hand(a, b, 0.95)
    (elo, ehi), *_ = welch_by_hand(a, b, 0.90)
    scale = abs(d) + (hi - lo)
    assert c["test"] == "Welch t" and (c["n_a"], c["n_b"]) == (len(a), 6)
    assert close(c["diff"], d, scale) and close(c["ci"][0], lo, scale) and close(c["ci"][1], hi, scale)
    assert close(c["equivalence_ci"][0], elo, scale) and close(c["equivalence_ci"][1], ehi, scale)
    p = sp.ttest_ind(b, a, equal_var=False).pvalue
    assert close(c["p_value"], p, p) and close(c["p_value"], 2 * sp.t.sf(abs(d) / se, df), p)
    tost = max(sp.t.sf((d + margin) / se, df), sp.t.cdf((d - margin) / se, df))
    assert close(c["tost_p_value"], tost, tost)
    # TOST at alpha is the 1 - 2 alpha interval inside the margin.
    assert (c["verdict"] == "equivalent") == (-margin < elo and ehi < margin)


@pytest.mark.parametrize("seed", range(5))
def test_paired_interval_and_p_value_equal_scipy(seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(0.0, 3.0, 5)
    b = a + rng.normal(0.4, 0.5, 5)   # twins: a shared seed's share of the spread cancels in b - a
    c = stats.compare_groups(a, b, 1.0, paired=True)
    dd = b - a
    lo, hi = sp.t.interval(0.95, 4, loc=dd.mean(), scale=sp.sem(dd))
    scale = abs(dd.mean()) + (hi - lo)
    assert c["test"] == "paired t" and close(c["ci"][0], lo, scale) and close(c["ci"][1], hi, scale)
    p = sp.ttest_rel(b, a).pvalue
    assert close(c["p_value"], p, p)
    se = sp.sem(dd)
    tost = max(sp.t.sf((dd.mean() + 1.0) / se, 4), sp.t.cdf((dd.mean() - 1.0) / se, 4))
    assert close(c["tost_p_value"], tost, tost)
    # The same numbers unpaired: each group's spread (sd 3) swamps a 0.4 difference the pairs pin down.
    welch = stats.compare_groups(a, b, 1.0)
    assert welch["ci"][1] - welch["ci"][0] > 3 * (hi - lo)


def test_same_distribution_is_different_at_most_alpha_of_the_time():
    """n = 5 vs 5 from one normal: "different" is the t-test's false positive, whose rate is alpha
    (Welch's test is at most slightly conservative at equal n); a z interval or a pooled test without
    the t quantile would exceed the bound. At this n, margin = 1 sd is rarely shown equivalent."""
    rng = np.random.default_rng(0)
    draws = 2000
    for paired in (False, True):
        verdicts = [stats.compare_groups(rng.normal(0, 1, 5), rng.normal(0, 1, 5), 1.0, paired=paired)["verdict"]
                    for _ in range(draws)]
        rate = verdicts.count("different") / draws
        assert rate <= ALPHA + binomial_bound(ALPHA, draws), (paired, rate)
        assert verdicts.count("inconclusive") > verdicts.count("equivalent") + verdicts.count("different")


def test_same_distribution_is_equivalent_at_large_n():
    """n = 200, margin = sd: the difference's standard error is 0.1 margins, so TOST's 90% interval
    (about ±0.17 margins around a difference within ±0.5 margins at 5 sigma) lies inside the margin
    in every draw but with chance below 1e-6."""
    rng = np.random.default_rng(1)
    for paired in (False, True):
        verdicts = {stats.compare_groups(rng.normal(0, 1, 200), rng.normal(0, 1, 200), 1.0,
                                         paired=paired)["verdict"] for _ in range(50)}
        assert verdicts == {"equivalent"}


def test_groups_five_margins_apart_are_different():
    """n = 5, noise sd = margin / 2: the t statistic is about 5 / (0.5 sqrt(2/5)) = 16 with 4-8 degrees
    of freedom; falling under the 5% critical value (< 2.8) takes a sample spread ~6x its sd, with
    chance far below 1e-9 per draw."""
    rng = np.random.default_rng(2)
    margin = 0.5
    for paired in (False, True):
        for _ in range(500):
            a = rng.normal(10.0, margin / 2, 5)
            c = stats.compare_groups(a, rng.normal(10.0 + 5 * margin, margin / 2, 5), margin, paired=paired)
            assert c["verdict"] == "different" and c["ci"][0] > 2 * margin, c


def test_zero_spread_is_exact():
    same = stats.compare_groups([0.8] * 3, [0.8] * 3, 0.5)
    assert same["verdict"] == "equivalent" and same["ci"] == [0.0, 0.0] and same["p_value"] == 1.0
    apart = stats.compare_groups([0.8] * 3, [1.5] * 3, 0.5)
    assert apart["verdict"] == "different" and apart["diff"] == pytest.approx(0.7, abs=4 * U64)
    near = stats.compare_groups([0.8] * 3, [1.0] * 3, 0.5)
    assert near["verdict"] == "equivalent"
    # Identical values whose float mean is not exactly them (0.1 * 3 / 3): still exact, no t-test on rounding.
    assert stats.compare_groups([0.1] * 3, [0.1] * 3, 0.5)["why"].startswith("no spread")
    # Paired twins whose differences are one constant: exact, though each group has spread.
    a = np.array([1.0, 2.0, 3.0])
    twins = stats.compare_groups(a, a + 0.25, 0.5, paired=True)
    assert twins["verdict"] == "equivalent" and twins["ci"] == [0.25, 0.25]
    assert stats.compare_groups(a, a + 0.25, 0.5)["verdict"] == "inconclusive"  # the same runs unpaired
    d = stats.describe([2.0, 2.0])
    assert d["std"] == 0.0 and d["ci"] == [2.0, 2.0]


def test_one_run_per_group_is_inconclusive():
    c = stats.compare_groups([0.5], [0.9], 1.0)
    assert c["verdict"] == "inconclusive" and c["ci"] is None and c["p_value"] is None and c["seeds_needed"] == 2
    assert "n = 1 vs 1" in stats.verdict_line(c)
    d = stats.describe([0.5])
    assert d["n"] == 1 and d["std"] is None and d["ci"] is None
    with pytest.raises(ValueError):
        stats.describe([])
    with pytest.raises(ValueError, match="margin must be positive"):
        stats.compare_groups([1, 2], [1, 2], 0.0)


def _with(mean: float, sd: float, n: int, rng) -> np.ndarray:
    """n values whose sample mean and sample sd are exactly ``mean`` and ``sd`` (to rounding)."""
    z = rng.normal(size=n)
    return mean + sd * (z - z.mean()) / z.std(ddof=1)


@pytest.mark.parametrize("diff, margin", [(0.5, 1.0), (0.7, None)])
def test_seeds_needed_settles_it_at_the_stated_rate(diff, margin):
    """The n suggested for an observed difference and spread is the least whose predicted power reaches
    80%; drawing n per group from those true values settles the verdict at that rate, within the
    binomial bound plus 1/df (the approximation leaves out the spread's own uncertainty, an O(1/df) effect)."""
    rng = np.random.default_rng(3)
    a, b = _with(0.0, 1.0, 4, rng), _with(diff, 1.0, 4, rng)
    c = stats.compare_groups(a, b, margin)
    assert c["verdict"] == "inconclusive"
    n = c["seeds_needed"]
    p = stats.power(n, diff, 1.0, margin)
    assert p >= stats.POWER > stats.power(n - 1, diff, 1.0, margin)
    want = "equivalent" if margin else "different"
    draws = 1000
    rate = sum(stats.compare_groups(rng.normal(0, 1, n), rng.normal(diff, 1, n), margin)["verdict"] == want
               for _ in range(draws)) / draws
    assert abs(rate - p) <= binomial_bound(p, draws) + 1 / (2 * n - 2), (n, p, rate)


def test_verdict_line_states_n_interval_and_margin():
    c = stats.compare_groups([0.80, 0.82, 0.81], [0.805, 0.83, 0.815], 0.01, paired=True)
    line = stats.verdict_line(c, " points", scale=100)
    assert line.startswith(f"{c['verdict']}: ") and "n = 3 vs 3" in line and "95% CI" in line
    assert "margin ±1 points" in line and "paired t p = " in line
