"""The report's verdicts on made-up curves: each claim of the original can come out yes, partly or no,
and a seed-dependent verdict states n and an interval that scipy.stats gives for the same numbers."""

import numpy as np
import pytest
from scipy import stats

from train.analysis.stats import _signed
from train.report import findings as F


def curves(test_loss, test_acc, train_acc=None):
    rows = []
    for e, (loss, acc) in enumerate(zip(test_loss, test_acc), 1):
        rows.append({"epoch": e, "split": "train", "loss": loss, "accuracy": (train_acc or test_acc)[e - 1]})
        rows.append({"epoch": e, "split": "test", "loss": loss, "accuracy": acc})
    return rows


def t_interval(values):
    """The 95% Student-t interval of the mean, from scipy's distribution directly."""
    x = np.asarray(values, dtype=np.float64)
    return stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))


def pct(x):
    return f"{100 * x:.1f}%"


def test_mean_ci_is_scipys_t_interval_and_says_n():
    v = [0.61, 0.72, 0.55, 0.68]
    lo, hi = t_interval(v)
    assert F.mean_ci(v) == f"{pct(np.mean(v))} (n = 4, 95% CI {pct(lo)} to {pct(hi)})"
    assert F.mean_ci([0.5]) == "50.0% (n = 1: no interval)"
    # Three bimodal seeds: the t-interval reaches past 0-100%; an accuracy's is cut to that range and says so.
    b = [0.2, 1.0, 1.0]
    lo, hi = t_interval(b)
    assert lo < 0 and hi > 1
    assert F.mean_ci(b) == f"{pct(np.mean(b))} (n = 3, 95% CI 0.0% to 100.0%, cut to 0-100%)"
    assert F.mean_ci(b, pct=False).endswith(f"95% CI {lo:.3g} to {hi:.3g})")
    # A loss's rise in percent is no accuracy: its interval is not cut at 100%.
    rises = [1.5, 1.6, 1.62]
    lo, hi = t_interval(rises)
    assert F.mean_ci(rises, accuracy=False) == f"{pct(np.mean(rises))} (n = 3, 95% CI {pct(lo)} to {pct(hi)})"
    assert F.few_seeds(3) == "" and "single-seed" in F.few_seeds(1) and "2-seed" in F.few_seeds(2)


def test_overfitting_finds_the_lowest_test_loss_and_the_rise_after_it():
    o = F.overfitting(curves([2.0, 1.5, 1.4, 1.6, 2.1], [0.3, 0.4, 0.5, 0.52, 0.51]))
    assert (o["low_epoch"], o["low_loss"], o["final_loss"]) == (3, 1.4, 2.1)
    assert o["rise"] == pytest.approx(0.5) and o["best_acc"] == 0.52 and o["final_acc"] == 0.51  # 2.1 / 1.4 - 1: arithmetic


def _plain(rise):
    return curves([2.0, 1.5, 1.4, 1.4 * (1 + rise / 2), 1.4 * (1 + rise)], [0.3, 0.4, 0.5, 0.52, 0.51])


def test_cifar_mlp_verdicts():
    plain = [_plain(r) for r in (0.5, 0.6, 0.55)]
    milder = [_plain(r) for r in (0.05, 0.08, 0.06)]
    ours, v = F.cifar_mlp(plain, milder)
    assert v.startswith("yes") and "significantly less for the improved" in v and "n = 3 vs 3" in v
    assert "epoch 3, 3, 3 (per seed) of 5" in ours
    rises = [p / 1.4 - 1 for p in (1.4 * 1.5, 1.4 * 1.6, 1.4 * 1.55)]
    lo, hi = t_interval(rises)
    assert f"then up {pct(np.mean(rises))} (n = 3, 95% CI {pct(lo)} to {pct(hi)})" in ours
    welch = stats.ttest_ind([0.05, 0.08, 0.06], [0.5, 0.6, 0.55], equal_var=False)
    assert f"Welch t p = {welch.pvalue:.2g}" in v
    assert F.cifar_mlp(plain, plain)[1].startswith("partly")
    one = F.cifar_mlp(plain[:1], milder[:1])[1]
    assert one.startswith("yes") and "single-seed verdict" in one
    assert F.cifar_mlp(milder, None)[1].startswith("no: not every seed's test loss bottoms out")
    assert F.cifar_mlp([curves([2.0] + [1.9 - 0.01 * k for k in range(20)], [0.5] * 21)], None)[1].startswith("no")


def test_reversals_count_sign_changes_above_the_wiggle():
    assert F.reversals([1.0, 1.1, 1.2, 1.3]) == 0
    assert F.reversals([1.0, 1.2, 1.1, 1.3, 1.2]) == 3
    assert F.reversals([1.0, 1.2, 1.1995, 1.3]) == 0  # a 0.05% dip is rounding, not a fluctuation


def _cnn(final, best, train, test_loss):
    summary = {"final": {"test_accuracy": final, "train_accuracy": train}, "best_test_accuracy": best}
    return summary, curves(test_loss, [final] * len(test_loss))


def test_cnn_verdicts():
    wavy = [1.2, 0.9, 0.85, 1.0, 0.95, 1.2, 1.1, 1.3]       # lowest at epoch 3, then up with 4 reversals
    ours, v = F.cnn(*_cnn(0.74, 0.75, 0.99, wavy))
    assert v.startswith("yes") and "fluctuates (4 reversals)" in v and "n = 1 seed" in ours
    assert "lowest 0.850 at epoch 3 of 8, then up 53%" in ours
    smooth = [1.2, 0.9, 0.85, 0.9, 1.0, 1.1, 1.2, 1.3]
    v = F.cnn(*_cnn(0.74, 0.75, 0.99, smooth))[1]
    assert v.startswith("partly: the test loss does not fluctuate (0 reversals")
    assert F.cnn(*_cnn(0.74, 0.75, 0.80, wavy))[1] == "partly: train accuracy 80.0%, below 95.0%"
    assert F.cnn(*_cnn(0.70, 0.71, 0.99, wavy))[1].startswith("partly: final test accuracy 3.0 points below")
    assert F.cnn(*_cnn(0.50, 0.52, 0.99, wavy))[1] == "no: final test accuracy 23.0 points below 73.0%"


def test_t19_verdicts_need_every_seed():
    good = curves([1.0] * 30, [0.5] * 9 + [0.9] * 21)
    late = curves([1.0] * 30, [0.5] * 15 + [0.95] * 15)
    bad = curves([1.0] * 30, [0.2] * 30)
    gap = curves([1.0] * 30, [0.9] * 30, train_acc=[1.0] * 30)
    ours, v = F.t19([good, good, good])
    assert v == "yes: every seed (3 of 3) at or above 90% by epoch 10, train and test together"
    assert "final test acc 90.0% (n = 3, 95% CI 90.0% to 90.0%)" in ours and "90.0 / 90.0 / 90.0%" in ours
    assert F.t19([good, late, good])[1].startswith("partly: every seed (3 of 3) reaches 90%")
    assert F.t19([good, gap, good])[1].startswith("partly")
    ours, v = F.t19([good, bad, late])
    assert v == "no: 1 of 3 seeds end below 90% (lowest final test accuracy 20.0%)"
    lo, hi = t_interval([0.9, 0.2, 0.95])
    assert f"(n = 3, 95% CI {pct(max(lo, 0))} to {pct(min(hi, 1))}{', cut to 0-100%' if lo < 0 or hi > 1 else ''})" in ours
    assert F.t19([good])[1].endswith("(a single-seed verdict: fewer than 3 seeds)")


def _runs(accs):
    """accs: {T: [acc per seed]} -> the sweep's runs as rnn_sweep writes them."""
    return [{"input_length": t, "seed": s, "test_accuracy": a} for t, v in accs.items() for s, a in enumerate(v)]


def test_sweep_trend_is_scipys_spearman_and_slope():
    runs = _runs({5: [1.0, 1.0], 15: [0.99, 1.0], 20: [0.6, 0.8], 30: [0.2, 0.3]})
    t = np.array([r["input_length"] for r in runs], float)
    a = np.array([r["test_accuracy"] for r in runs])
    tr = F.trend(runs)
    rho, fit = stats.spearmanr(t, a), stats.linregress(t, a)
    half = stats.t.ppf(0.975, len(a) - 2) * fit.stderr
    assert (tr["rho"], tr["p"], tr["slope"], tr["n"]) == (rho.statistic, rho.pvalue, fit.slope, 8)
    assert tr["ci"] == [fit.slope - half, fit.slope + half]
    assert F.trend(_runs({5: [1.0, 1.0], 10: [1.0]})) is None  # every accuracy the same: no trend to measure


def test_sweep_shape_verdicts():
    short = {5: [1.0, 1.0, 1.0], 10: [1.0, 0.995, 1.0], 15: [1.0, 1.0, 0.99]}
    ours, v = F.sweep_shape(_runs({**short, 20: [0.5, 0.55, 0.6], 25: [0.2, 0.25, 0.3], 30: [0.1, 0.15, 0.2]}))
    assert v.startswith("yes: every seed at or above 99% for T <= 15 (n = 9); accuracy falls with length")
    s = [a for v_ in short.values() for a in v_]
    welch = stats.ttest_ind([0.5, 0.55, 0.6], s, equal_var=False)
    ci = welch.confidence_interval(0.95)
    assert (f"T=20 lower than T <= 15: {100 * (0.55 - np.mean(s)):+.1f} points (95% CI {100 * ci.low:+.1f} to "
            f"{100 * ci.high:+.1f}; Welch t p = {welch.pvalue:.2g}; n = 9 vs 3)") in v
    assert "T >= 25 at least 20 points lower than T <= 15" in v
    lo, hi = t_interval([0.5, 0.55, 0.6])
    assert f"T=20 55.0% (n = 3, 95% CI {pct(lo)} to {pct(hi)})" in ours
    # The T=20: one seed learns it, two do not: lower on average, not significantly.
    v = F.sweep_shape(_runs({**short, 20: [1.0, 0.201, 0.659], 25: [0.1, 0.2, 0.15], 30: [0.2, 0.1, 0.2]}))[1]
    assert v.startswith("partly") and "but T=20 not significantly lower than T <= 15" in v
    v = F.sweep_shape(_runs({5: [1.0], 15: [1.0], 25: [0.95], 30: [0.9]}))[1]
    assert v.startswith("partly") and "no T=20 in the sweep" in v and "single-seed verdict" in v
    v = F.sweep_shape(_runs({5: [1.0, 1.0], 15: [1.0, 0.6], 30: [0.1, 0.1]}))[1]
    assert v == "no: not every seed reaches 99% for T <= 15 (T=15 seed 1 at 60.0%) (a 2-seed verdict: fewer than 3 seeds)"


def test_schedule_conclusions_test_each_long_length():
    step = _runs({10: [1.0, 1.0, 1.0], 20: [0.5, 0.3, 0.7], 30: [0.1, 0.12, 0.11]})
    table, c = F.schedule(step, _runs({10: [1.0, 1.0, 1.0], 20: [1.0, 0.995, 1.0], 30: [0.995, 1.0, 1.0]}))
    assert c.startswith("**The schedule.**") and len(table) == 3
    paired = stats.ttest_rel([1.0, 0.995, 1.0], [0.5, 0.3, 0.7])
    ci = paired.confidence_interval(0.95)
    assert (f"| 20 | 50.0% ± 20.0 (min 30.0%) | 99.8% ± 0.3 (min 99.5%) | +49.8 points (95% CI {100 * ci.low:+.1f} "
            f"to {100 * ci.high:+.1f}; paired t p = {paired.pvalue:.2g}; n = 3 pairs) |") in table[1]
    worse = F.schedule(step, _runs({10: [1.0] * 3, 20: [0.2, 0.05, 0.35], 30: [0.02, 0.05, 0.03]}))[1]
    assert worse.startswith("**The vanishing gradient, not the schedule.** A constant rate does significantly worse "
                            "at T=20 (-30.0 points), T=30 (-7.7 points)")
    both = F.schedule(step, _runs({10: [1.0] * 3, 20: [0.8, 0.6, 1.0], 30: [0.1, 0.12, 0.11]}))[1]
    assert both.startswith("**Both.** A constant rate changes the long sequences significantly at T=20 (+30.0 points)")
    same = F.schedule(step, _runs({10: [1.0] * 3, 20: [0.502, 0.301, 0.699], 30: [0.1, 0.121, 0.11]}))[1]
    assert same.startswith("**The vanishing gradient, not the schedule.** A constant rate changes T >= 20 by at most "
                           "0.1 points, the same within ±1")
    noisy = F.schedule(step, _runs({10: [1.0] * 3, 20: [0.9, 0.1, 0.3], 30: [0.5, 0.1, 0.1]}))[1]
    assert noisy.startswith("**Not settled by 3 seed(s).** No difference at T >= 20 is significant")
    assert "seeds per sweep would settle every length" in noisy
    assert F.schedule(step, _runs({10: [1.0]}))[1].startswith("No length >= 20")


def _toy(**speed):
    """{set: {fw: summary}} with NumPy at 1,000 ex/s in 1 s; speed: fw -> (ex/s, wall s, compile s)."""
    def s(ex, wall, comp):
        return {"examples_per_s": ex, "wall_time_s": wall, "compile_time_s": comp}
    return {"moons": {"numpy": s(1000, 1.0, 0.0), **{fw: s(*v) for fw, v in speed.items()}}}


def test_toy_speed_counts_whole_run_time_and_every_framework():
    ours, v = F.toy_speed(_toy(jax=(3000, 0.5, 0.1), torch=(2000, 0.8, 0.0)))
    assert v.startswith("no: every framework is faster") and "moons torch: 2.00x NumPy's ex/s" in ours
    v = F.toy_speed(_toy(jax=(3000, 1.5, 1.2), torch=(2000, 0.8, 0.0)))[1]
    assert v.startswith("yes: slower than NumPy for jax on moons (whole-run time)")
    v = F.toy_speed(_toy(jax=(3000, 0.5, 0.1), torch=(500, 2.0, 0.0)))[1]
    assert v.startswith("yes: slower than NumPy for torch on moons (ex/s and whole-run time)")


def test_frameworks_verdict_is_paired_by_seed_with_a_margin():
    jax, torch = [0.540, 0.552, 0.531], [0.542, 0.551, 0.534]
    ours, v, c = F.frameworks(jax, torch)
    paired = stats.ttest_rel(torch, jax)
    ci = paired.confidence_interval(0.95)
    d = 100 * np.mean(np.subtract(torch, jax))
    assert v.startswith(f"equivalent: {_signed(d)} points (95% CI {_signed(100 * ci.low)} to {_signed(100 * ci.high)}),"
                        f" n = 3 vs 3 (paired t p = {paired.pvalue:.2g}), margin ±1 points")
    assert v.endswith("n = 3 seed pairs") and "JAX 54.1% (n = 3, 95% CI" in ours
    assert F.frameworks(jax, [a + 0.05 for a in jax])[2]["verdict"] == "different"
    one = F.frameworks(jax[:1], torch[:1])[1]
    assert one == "not tested: one seed pair (+0.20 points), no spread to test a difference against (a single-seed " \
                  "verdict: fewer than 3 seeds)"
