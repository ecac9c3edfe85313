"""The report's claims: the original's results beside ours with a verdict each, and the schedule ablation
(every way our runs differ from the original's: deviations.py)."""

from __future__ import annotations

from pathlib import Path

from train.report import findings as F
from train.report.markdown import _fig, _pct, median_grad_ratios, numpy_vs_jax
from train.report.plan import Plan
from train.engine.results import read_jsonl

QUICK_VERDICT = "not comparable: scaled down (quick)"


def _rows(path: Path) -> list[dict]:
    return read_jsonl(path / "metrics.jsonl")


def comparison(plan: Plan, results: dict, out: Path, *, sweep: dict | None, ratios: list) -> list[str]:
    """The table "original reported / ours / match?", one verdict per claim with the numbers behind it."""
    def verdict(v: str) -> str:
        return QUICK_VERDICT if plan.quick else v

    L = ["## The original's results and ours", "", "| what | original reported | ours | match? |", "|---|---|---|---|"]
    if results["toy"]:
        toy_acc = ", ".join(f"{n} {_pct(s['numpy']['final']['test_accuracy'])} / {_pct(s['jax']['final']['test_accuracy'])}"
                            for n, s in results["toy"].items())
        pairs = [numpy_vs_jax(s["compare"]) for s in results["toy"].values()]
        max_diff = max(p["max_abs_loss_diff"] for p in pairs)
        max_acc = max(p["final_test_accuracy_diff"] for p in pairs)
        L.append(f"| Part 1 T1-2: NumPy vs framework | similar accuracy; curves differ in detail (init, order) | "
                 f"test acc NumPy / JAX: {toy_acc}; max loss difference {max_diff:.1e} | "
                 + ("yes: the same accuracy; ours start from the same weights and batches, so the curves coincide"
                    if max_acc <= 0.01 else f"no: test accuracies differ by up to {100 * max_acc:.1f} points") + " |")
        ratios_speed = [s["jax"]["examples_per_s"] / s["numpy"]["examples_per_s"] for s in results["toy"].values()]
        speed = ", ".join(f"{n} JAX {s['jax']['examples_per_s']:,.0f} vs NumPy {s['numpy']['examples_per_s']:,.0f} ex/s"
                          for n, s in results["toy"].items())
        L.append(f"| Part 1 T1-2: speed | framework sometimes slower than NumPy (per-step overhead) | {speed} | "
                 + ("no, by design: JAX fuses the 30 steps between evaluations into one compiled call, which "
                    f"removes the per-step overhead ({min(ratios_speed):.1f}x to {max(ratios_speed):.1f}x NumPy)"
                    if min(ratios_speed) > 1 else
                    "yes: NumPy is faster on at least one set (compiled-call overhead on a tiny problem)") + " |")
    keys = {k.split("/")[1].split("-")[0]: k for k in results["cifar"]}
    if "plain" in keys:
        improved = _rows(out / keys["improved"]) if "improved" in keys else None
        ours, v = F.cifar_mlp(_rows(out / keys["plain"]), improved)
        L.append(f"| Part 1 T3: CIFAR MLP | effective learning for ~5 epochs, then the test loss rises (heavy "
                 f"overfitting); the improved variant (dropout, batch norm) overfits less | {ours} | {verdict(v)} |")
    if "cnn" in keys:
        ours, v = F.cnn(results["cifar"][keys["cnn"]])
        L.append(f"| Part 2: CNN | test accuracy plateaus around **75%**, train accuracy near 100% | {ours} | "
                 f"{verdict(v)} |")
    if results["rnn"].get("t19") is not None:
        ours, v = F.t19(_rows(out / "rnn-palindrome" / plan.rnn_t19.run_name))
        L.append(f"| Part 3: T=19 | ~90% train and test by epoch 10, no overfitting | {ours} | {verdict(v)} |")
    van = sweep["summary"].get("vanilla", []) if sweep else []
    if van:
        ours, v = F.sweep_shape(van, [r for r in sweep["runs"] if r["cell"] == "vanilla"])
        L.append(f"| Part 3: sweep | ~100% up to T=15, sharp drop at T=25 and 30 | vanilla: {ours} | {verdict(v)} |")
    lstm = sweep["summary"].get("lstm", []) if sweep else []
    if lstm:
        longest = max(sweep["lengths"])
        ratio = {c: q for (c, t), (q, _) in median_grad_ratios(ratios).items() if t == longest}
        grad_note = (f"; at T={longest}, dL/dh_1 / dL/dh_T at initialisation is {ratio['lstm']:.1e} for the LSTM "
                     f"vs {ratio['vanilla']:.1e} for the vanilla RNN" if {"lstm", "vanilla"} <= set(ratio) else "")
        L.append("| Part 3: LSTM | (not in the original) | " +
                 ", ".join(f"T={r['input_length']} {_pct(r['mean'])}" for r in lstm) + f"{grad_note} | – |")
    return L


def schedule_section(plan: Plan, results: dict, out: Path) -> list[str]:
    """The schedule ablation: StepLR (step 10, x0.1) against a constant rate, vanilla RNN, per length."""
    step = results["rnn"].get("sweep", {}).get("summary", {}).get("vanilla", [])
    const = results["rnn"]["ablation"]["summary"]["vanilla"]
    ab = plan.ablation
    L = ["### The schedule question: StepLR or the vanishing gradient?", "",
         f"The vanilla sweep again with a constant learning rate (`rnn-sweep --lr-gamma 1`, {ab['seeds']} seed(s), "
         f"{ab['cfg'].epochs} epochs), beside the StepLR sweep (step {ab['cfg'].lr_step}, factor "
         f"{plan.sweep['cfg'].lr_gamma if plan.sweep else 0.1:g}). Final test accuracy, mean ± std over seeds:", "",
         _fig(out, out / ab["cfg"].sweep_name / "accuracy_vs_length.png", "accuracy vs length, constant rate"), ""]
    if not step:
        return L + ["The StepLR sweep (part `sweep`) is not in this report: no comparison.", ""]
    rows, conclusion = F.schedule(step, const)
    L += ["| T | StepLR | constant rate | difference (points) |", "|---|---|---|---|", *rows, ""]
    L += [QUICK_VERDICT + "." if plan.quick else conclusion, ""]
    return L
