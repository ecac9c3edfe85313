"""The report's claims: the original's results beside ours with a verdict each, and the schedule ablation
(every way our runs differ from the original's: deviations.py)."""

from __future__ import annotations

from pathlib import Path

from train.report import findings as F
from train.report.markdown import _fig, _pct, median_grad_ratios, numpy_vs_jax
from train.report.plan import Plan, seed_count, seed_runs
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
        ours, v = F.toy_speed(results["toy"])
        L.append(f"| Part 1 T1-2: speed | framework sometimes slower than NumPy (per-step overhead) | {ours} | {v} |")
    runs = {c.variant if c.model == "mlp" else c.model: [_rows(out / c.experiment / r.run_name)
                                                         for r in seed_runs(c, seed_count(plan, c))]
            for c in plan.cifar}
    if "plain" in runs:
        ours, v = F.cifar_mlp(runs["plain"], runs.get("improved"))
        L.append(f"| Part 1 T3: CIFAR MLP | effective learning for ~5 epochs, then the test loss rises (heavy "
                 f"overfitting); the improved variant (dropout, batch norm) overfits less | {ours} | {verdict(v)} |")
    for key, p in results.get("frameworks", {}).items():
        if key.startswith("mlp"):
            ours, v, _ = F.frameworks([x["jax"]["final"]["test_accuracy"] for x in p["seeds"]],
                                      [x["torch"]["final"]["test_accuracy"] for x in p["seeds"]])
            variant = "improved" if key == "mlp-improved" else "plain"
            L.append(f"| Part 1 T3: JAX vs PyTorch, {variant} MLP | (the original trained in PyTorch; ours are twins: "
                     f"same initial weights and batches) | {ours} | {v} |")
    if "cnn" in runs:
        (cnn,) = [c for c in plan.cifar if c.model == "cnn"]
        ours, v = F.cnn(results["cifar"][f"{cnn.experiment}/{cnn.run_name}"], runs["cnn"][0])
        L.append(f"| Part 2: CNN | test accuracy plateaus around **75%**, train accuracy near 100%, the test loss "
                 f"fluctuates (overfitting) | {ours} | {verdict(v)} |")
    if plan.rnn_t19 is not None and results["rnn"].get("t19_seeds"):
        ours, v = F.t19([_rows(out / "rnn-palindrome" / c.run_name) for c in seed_runs(plan.rnn_t19, plan.t19_seeds)])
        L.append(f"| Part 3: T=19 | ~90% train and test by epoch 10, no overfitting | {ours} | {verdict(v)} |")
    van = [r for r in sweep["runs"] if r["cell"] == "vanilla"] if sweep else []
    if van:
        ours, v = F.sweep_shape(van)
        L.append(f"| Part 3: sweep | ~100% up to T=15, lower beyond, sharp drop at T=25 and 30 | vanilla: {ours} | "
                 f"{verdict(v)} |")
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
    step = [r for r in results["rnn"].get("sweep", {}).get("runs", []) if r["cell"] == "vanilla"]
    const = [r for r in results["rnn"]["ablation"]["runs"] if r["cell"] == "vanilla"]
    ab = plan.ablation
    L = ["### The schedule question: StepLR or the vanishing gradient?", "",
         f"The vanilla sweep again with a constant learning rate (`rnn-sweep --lr-gamma 1`, {ab['seeds']} seed(s), "
         f"{ab['cfg'].epochs} epochs), beside the StepLR sweep (step {ab['cfg'].lr_step}, factor "
         f"{plan.sweep['cfg'].lr_gamma if plan.sweep else 0.1:g}). Final test accuracy, mean ± sample std over seeds; the "
         "difference is constant minus StepLR with its 95% interval, paired by seed (the same seed starts both from "
         "the same weights and batches) where both sweeps ran the same seeds; the verdict tests it against a margin "
         "of ±1 point:", "",
         _fig(out, out / ab["cfg"].sweep_name / "accuracy_vs_length.png", "accuracy vs length, constant rate"), ""]
    if not step:
        return L + ["The StepLR sweep (part `sweep`) is not in this report: no comparison.", ""]
    rows, conclusion = F.schedule(step, const)
    L += ["| T | StepLR | constant rate | difference (constant minus StepLR) | verdict |", "|---|---|---|---|---|",
          *rows, ""]
    L += [QUICK_VERDICT + "." if plan.quick else conclusion, ""]
    return L
