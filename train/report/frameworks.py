"""The report's cross-framework part: PyTorch twins of JAX runs, their comparison, and its section.

A twin starts from the JAX run's initial weights and sees its batches (``--framework torch``), so
the two curves should lie on each other up to float32 rounding; ``train.analysis.compare`` measures how far
apart they are. The toy runs compare NumPy, JAX and PyTorch themselves (``mlp-toy --framework all``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from train.analysis.compare import _fmt, compare_pair, compare_runs, load_run
from train.experiments import cifar, rnn
from train.report import findings as F
from train.report.markdown import _f, _fig
from train.report.plan import Plan, seed_count, seed_runs, twin_key, twin_part
from train.backends.torch_backend import TORCH_MISSING, torch_available

LABELS = {"toy": "Part 1, Tasks 1-2 (toy MLP)", "mlp": "Part 1, Task 3 (CIFAR MLP, plain)",
          "mlp-improved": "Part 1, Task 3 (CIFAR MLP, improved: batch norm and dropout)",
          "t19": "Part 3 (vanilla RNN, T=19)"}

# Dropout draws its masks from each framework's own random stream, so these twins part after the first step.
NOTES = {"mlp-improved": ["Dropout draws its masks from each framework's own random stream (JAX's keys, PyTorch's "
                          "generator): the twins share initial weights and batches but part after the first step, "
                          "like two seeds, so only the paired verdict over seeds below compares them.", ""]}


def each_run(plan: Plan, results: dict, out: Path, run_or_reuse) -> None:
    """Every seeded run of the plan but the toy's and the sweeps', by ``run_or_reuse(fn, cfg,
    workdir, name) -> summary``: the CIFAR runs, T=19's seeds and the PyTorch twins, into
    ``results``. Training and re-rendering walk the same runs through this one loop."""
    for cfg in (c for base in plan.cifar for c in seed_runs(base, seed_count(plan, base))):
        results["cifar"][f"{cfg.experiment}/{cfg.run_name}"] = run_or_reuse(
            cifar.train_and_evaluate, cfg, out / cfg.experiment, cfg.run_name)
    if plan.rnn_t19 is not None:
        results["rnn"]["t19_seeds"] = [run_or_reuse(rnn.train_and_evaluate, c, out / rnn.EXPERIMENT, c.run_name)
                                       for c in seed_runs(plan.rnn_t19, plan.t19_seeds)]
        results["rnn"]["t19"] = results["rnn"]["t19_seeds"][0]
    run_twins(plan, results, out, run_or_reuse)


def run_twins(plan: Plan, results: dict, out: Path, run_or_reuse) -> None:
    """Train (or reuse) each PyTorch twin, every seed, and compare it with its JAX run:
    ``results["frameworks"][key]``, with the first seed's pair compared in full (figure and every
    evaluation) and every seed's pair in ``seeds``."""
    for base in plan.twins:
        key = twin_key(base)
        pairs = []
        for cfg in seed_runs(base, seed_count(plan, base)):
            jax_cfg = dataclasses.replace(cfg, framework="jax")
            fn, workdir = ((rnn.train_and_evaluate, out / rnn.EXPERIMENT) if twin_part(cfg) == "t19" else
                           (cifar.train_and_evaluate, out / cfg.experiment))
            run_or_reuse(fn, cfg, workdir, cfg.run_name)
            a, b = load_run(workdir / jax_cfg.run_name), load_run(workdir / cfg.run_name)
            pairs.append({"seed": cfg.seed, "jax": a["summary"], "torch": b["summary"], "pair": compare_pair(a, b),
                          "dirs": (workdir / jax_cfg.run_name, workdir / cfg.run_name)})
        doc = compare_runs(list(pairs[0]["dirs"]), out / "cross-framework" / key)
        results["frameworks"][key] = {"runs": {"jax": pairs[0]["jax"], "torch": pairs[0]["torch"]}, "compare": doc,
                                      "dir": out / "cross-framework" / key, "seeds": pairs}


def _toy_parts(results: dict, out: Path) -> dict:
    """The toy sets' comparisons with PyTorch in the shape of ``results["frameworks"]`` entries."""
    parts = {}
    for name, s in results["toy"].items():
        if "compare" in s and "torch" in s:
            runs = {fw: s[fw] for fw in ("numpy", "jax", "torch") if fw in s}
            seed = s["jax"].get("seed", 0)
            parts[f"toy {name}"] = {"runs": runs, "compare": s["compare"],
                                    "dir": out / "mlp-toy" / f"{name}-compare-s{seed}"}
    return parts


def section(plan: Plan, results: dict, out: Path) -> list[str]:
    """Per part: the overlay, the agreement table (every pair) and the speed of each framework."""
    L = ["## Cross-framework: JAX vs PyTorch (vs NumPy)", ""]
    if not torch_available():
        return L + [f"**PyTorch is not installed here**, so this report has no PyTorch runs ({TORCH_MISSING}). "
                    "The toy sets still compare NumPy with JAX (Part 1 above).", ""]
    parts = {**_toy_parts(results, out), **results.get("frameworks", {})}
    if not parts:
        return []
    L += ["Each PyTorch run starts from its JAX twin's initial weights (converted) and trains on the same batches "
          "with the same optimizer, in float32 on this machine; the curves should coincide up to rounding, which "
          "grows with the number of steps (docs/cross-framework.md says what to expect where). "
          "Differences are b minus a; the loss difference is the largest over every evaluation both runs made. "
          "Where training passes through an instability (the gradient spike with which the vanilla RNN leaves "
          "its plateau) the rounding is amplified to differences the size of seed-to-seed spread; the float64 "
          "tests (`tests/test_cross_framework.py`) show that the two still compute the same thing.", ""]
    for key, p in parts.items():
        title = LABELS.get(key.split()[0], key) + (f": {key.split()[1]}" if " " in key else "")
        L += [f"### {title}", "", *NOTES.get(key, []), _fig(out, p["dir"] / "curves.png", f"{key} overlay"), "",
              "| a | b | max abs loss diff | final test acc diff | ex/s ratio (b / a) |", "|---|---|---|---|---|"]
        fw = {r["label"]: r.get("framework") or r["label"] for r in p["compare"]["runs"]}
        for pr in p["compare"]["pairs"]:
            L.append(f"| {fw[pr['a']]} | {fw[pr['b']]} | {_fmt(pr['max_abs_loss_diff'], '.2e')} "
                     f"| {100 * pr['final_test_accuracy_diff']:+.2f} points | {_f(pr['examples_per_s_ratio'], 2)} |")
        L += ["", "| framework | train ex/s | wall s | compile s | final test acc |", "|---|---|---|---|---|"]
        for fw, s in p["runs"].items():
            if s is None:
                continue
            L.append(f"| {fw} | {s['examples_per_s']:,.0f} | {s['wall_time_s']:.1f} | {s['compile_time_s']:.1f} "
                     f"| {100 * s['final']['test_accuracy']:.1f}% |")
        L += ["", *seeds_verdict(p.get("seeds"))]
    return L


def seeds_verdict(pairs: list[dict] | None) -> list[str]:
    """Every seed's JAX-PyTorch pair, and whether the frameworks reach the same final test accuracy
    (paired by seed, within FRAMEWORK_MARGIN): the question a cross-framework study asks."""
    if not pairs:
        return []
    L = ["| seed | JAX final test acc | PyTorch final test acc | difference | max abs loss diff |", "|---|---|---|---|---|"]
    for x in pairs:
        ja, ta = x["jax"]["final"]["test_accuracy"], x["torch"]["final"]["test_accuracy"]
        L.append(f"| {x['seed']} | {100 * ja:.2f}% | {100 * ta:.2f}% | {100 * (ta - ja):+.2f} points | "
                 f"{_fmt(x['pair']['max_abs_loss_diff'], '.2e')} |")
    if len(pairs) < 2:
        return L + ["", f"**Same final test accuracy?** One seed pair (n = 1): no spread to test a difference against; "
                        "the exact comparison above is this part's check.", ""]
    ours, verdict, _ = F.frameworks([x["jax"]["final"]["test_accuracy"] for x in pairs],
                                    [x["torch"]["final"]["test_accuracy"] for x in pairs])
    return L + ["", f"**Same final test accuracy?** (PyTorch minus JAX, paired by seed, margin "
                    f"±{100 * F.FRAMEWORK_MARGIN:g} point): {verdict}. {ours}.", ""]
