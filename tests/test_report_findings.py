"""The report's verdicts on made-up curves: each claim of the original can come out yes, partly or no."""

import pytest

from train.report import findings as F


def curves(test_loss, test_acc, train_acc=None):
    rows = []
    for e, (loss, acc) in enumerate(zip(test_loss, test_acc), 1):
        rows.append({"epoch": e, "split": "train", "loss": loss, "accuracy": (train_acc or test_acc)[e - 1]})
        rows.append({"epoch": e, "split": "test", "loss": loss, "accuracy": acc})
    return rows


def test_overfitting_finds_the_lowest_test_loss_and_the_rise_after_it():
    o = F.overfitting(curves([2.0, 1.5, 1.4, 1.6, 2.1], [0.3, 0.4, 0.5, 0.52, 0.51]))
    assert (o["low_epoch"], o["low_loss"], o["final_loss"]) == (3, 1.4, 2.1)
    assert o["rise"] == pytest.approx(0.5) and o["best_acc"] == 0.52 and o["final_acc"] == 0.51  # 2.1 / 1.4 - 1: arithmetic


def test_cifar_mlp_verdicts():
    plain = curves([2.0, 1.5, 1.4, 1.6, 2.1], [0.3, 0.4, 0.5, 0.52, 0.51])
    milder = curves([2.0, 1.5, 1.4, 1.45, 1.5], [0.3, 0.4, 0.5, 0.52, 0.53])
    ours, v = F.cifar_mlp(plain, milder)
    assert v.startswith("yes") and "less for the improved" in v and "epoch 3 of 5, then up 50%" in ours
    assert F.cifar_mlp(plain, plain)[1].startswith("partly")
    assert F.cifar_mlp(milder, None)[1].startswith("no: the lowest test loss comes at epoch 3")
    assert F.cifar_mlp(curves([2.0] + [1.9 - 0.01 * k for k in range(20)], [0.5] * 21), None)[1].startswith("no")


def test_cnn_verdicts():
    def s(final, best):
        return {"final": {"test_accuracy": final, "train_accuracy": 0.99}, "best_test_accuracy": best}
    assert F.cnn(s(0.74, 0.75))[1].startswith("yes")
    assert F.cnn(s(0.70, 0.71))[1].startswith("partly")
    assert F.cnn(s(0.50, 0.52))[1] == "no: 23.0 points below 73.0%"


def test_t19_verdicts():
    good = curves([1.0] * 30, [0.5] * 9 + [0.9] * 21)
    assert F.t19(good)[1].startswith("yes")
    late = curves([1.0] * 30, [0.5] * 15 + [0.95] * 15)
    assert F.t19(late)[1].startswith("partly")
    bad = curves([1.0] * 30, [0.2] * 30)
    assert F.t19(bad)[1] == "no: final test accuracy 20.0%"
    gap = curves([1.0] * 30, [0.9] * 30, train_acc=[1.0] * 30)
    assert F.t19(gap)[1].startswith("partly")


def _sweep(accs):
    """accs: {T: [acc per seed]} -> (summary rows, runs) as rnn.sweep writes them."""
    runs = [{"input_length": t, "seed": s, "test_accuracy": a} for t, v in accs.items() for s, a in enumerate(v)]
    rows = [{"input_length": t, "mean": sum(v) / len(v), "std": 0.0, "min": min(v)} for t, v in accs.items()]
    return rows, runs


def test_sweep_shape_verdicts():
    assert F.sweep_shape(*_sweep({5: [1.0, 1.0], 15: [0.995, 1.0], 25: [0.3, 0.4], 30: [0.2, 0.1]}))[1].startswith("yes")
    assert F.sweep_shape(*_sweep({5: [1.0], 15: [1.0], 25: [0.95], 30: [0.9]}))[1].startswith("partly")
    ours, v = F.sweep_shape(*_sweep({5: [1.0, 1.0], 15: [1.0, 0.6], 30: [0.1, 0.1]}))
    assert v == "no: not every seed reaches 99% for T <= 15 (T=15 seed 1 at 60.0%)"


def test_schedule_conclusions():
    step, _ = _sweep({10: [1.0], 20: [0.5], 30: [0.1]})
    fixed, _ = _sweep({10: [1.0], 20: [1.0], 30: [0.995]})
    table, c = F.schedule(step, fixed)
    assert c.startswith("**The schedule.**") and len(table) == 3 and "+50.0 |" in table[1]
    assert F.schedule(step, _sweep({10: [1.0], 20: [0.8], 30: [0.12]})[0])[1].startswith("**Both.**")
    assert F.schedule(step, _sweep({10: [1.0], 20: [0.52], 30: [0.1]})[0])[1].startswith(
        "**The vanishing gradient, not the schedule.** A constant rate changes T >= 20 by at most 2.0 points")
    worse = F.schedule(step, _sweep({10: [1.0], 20: [0.2], 30: [0.08]})[0])[1]
    assert worse.startswith("**The vanishing gradient, not the schedule.** A constant rate does worse at T >= 20 "
                            "(-30.0 points at T=20)")
    assert F.schedule(step, _sweep({10: [1.0]})[0])[1].startswith("No length >= 20")
