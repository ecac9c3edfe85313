"""REPORT.md: every part's tables and figures, the verdicts, the deviations and the figure map."""

from __future__ import annotations

import dataclasses
import datetime
import os
from pathlib import Path

from train.report import frameworks
from train.report.claims import comparison, schedule_section
from train.report.deviations import deviations, precision_note
from train.report.markdown import HEADER, _best_epoch, _fig, _pct, _summary_row, median_grad_ratios, numpy_vs_jax
from train.report.plan import PARTS, ROOT, Plan
from train.analysis.stats import describe
from train.backends.jax_backend import jax_device_info
from train.engine.results import package_versions


def figure_map(plan: Plan, out: Path) -> list[str]:
    """The original's figures by number, each with ours (or why there is none)."""
    def link(path: Path, text: str) -> str:
        return _fig(out, path, text, image=False)

    rows = []
    seed = plan.toy[0].seed if plan.toy else 0
    toy = out / "mlp-toy"
    if plan.toy:
        rows.append(("1", "the toy data sets", link(toy / f"datasets-s{seed}.png", "data sets")))
        for name, (np_figs, fw_figs) in {"moons": ("2, 4", "3, 5"), "blobs": ("13, 15", "14, 16"),
                                         "circles": ("17, 19", "18, 20")}.items():
            for figs, fw in ((np_figs, "numpy"), (fw_figs, "jax")):
                rows.append((figs, f"{name}: accuracy, loss ({fw})",
                             link(toy / f"{name}-{fw}-s{seed}" / "curves.png", f"{name} {fw} curves")))
    for c in plan.cifar:
        if c.model == "mlp" and c.variant != "plain":
            continue
        figs, what = ("8, 9", "CNN") if c.model == "cnn" else ("6, 7", "CIFAR-10 MLP")
        rows.append((figs, f"{what}: accuracy, loss",
                     link(out / c.experiment / c.run_name / "curves.png", f"{c.experiment} curves")))
    if "cnn" not in plan.parts:
        gpu = sorted(GPU_REFERENCE.glob("cnn-cifar/cnn-fp32-*/curves.png")) or sorted(
            GPU_REFERENCE.glob("cnn-cifar/*/curves.png"))
        rows.append(("8, 9", "CNN: accuracy, loss", "left out of this report; " + (
            f"the GPU reference's{_gpu_precision()}: [{gpu[0].parent.name}]({os.path.relpath(gpu[0], out)})" if gpu else
            "no GPU reference found")))
    if plan.rnn_t19 is not None:
        rows.append(("10, 11", "RNN T=19: loss, accuracy",
                     link(out / "rnn-palindrome" / plan.rnn_t19.run_name / "curves.png", "T=19 curves")))
    if plan.sweep and "vanilla" in plan.sweep["cells"]:
        sw = plan.sweep
        rows.append(("12", "RNN: accuracy vs sequence length",
                     link(out / "rnn-sweep" / "accuracy_vs_length.png", "accuracy vs length")))
        first = 21
        for t in (5, 10, 15, 20, 25, 30):
            figs = f"{first}, {first + 1}"
            first += 2
            if t not in sw["lengths"]:
                rows.append((figs, f"RNN T={t}: accuracy, loss", "not in this report's sweep"))
                continue
            cfgs = [dataclasses.replace(sw["cfg"], input_length=t, cell="vanilla", seed=sw["cfg"].seed + k)
                    for k in range(sw["seeds"])]
            runs = [c.run_name for c in cfgs]
            rows.append((figs, f"RNN T={t}: accuracy, loss (every seed)",
                         link(out / sw["cfg"].sweep_name / f"T{t}-vanilla-curves.png", f"T={t}, all seeds") +
                         "; each seed: " +
                         ", ".join(link(out / "rnn-palindrome" / r / "curves.png", r) for r in runs)))
    left = [p for p in PARTS if p not in plan.parts]
    L = ["## The original's figures and ours", "",
         "| original figure | what | ours |", "|---|---|---|"]
    rows.sort(key=lambda r: int(r[0].split(",")[0]))
    L += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    if left:
        L += ["", f"Parts left out of this report: {', '.join(left)} (their figures are marked as such above, or "
                  "absent when no figure of the original belongs to them)."]
    return L


def runs_wall_s(results: dict) -> float:
    """The summed wall time of every run in ``results`` (toy frameworks, CIFAR runs, T=19, the sweep)."""
    total = sum(s[fw]["wall_time_s"] for s in results["toy"].values() for fw in TOY_FRAMEWORKS if fw in s)
    total += sum(s["wall_time_s"] for s in results["cifar"].values())
    total += sum(x["torch"]["wall_time_s"] for p in results.get("frameworks", {}).values() for x in p["seeds"])
    total += sum(s["wall_time_s"] for s in results["rnn"].get("t19_seeds", []))
    # Seeds trained side by side each report their shared program's time: count it once.
    total += sum(r["wall_time_s"] / r.get("trained_together", 1)
                 for key in ("sweep", "ablation") for r in results["rnn"].get(key, {}).get("runs", []))
    return total


GPU_REFERENCE = ROOT / "results" / "reference-gpu"
TOY_FRAMEWORKS = ("numpy", "jax", "torch")
NAMES = {"numpy": "NumPy", "jax": "JAX", "torch": "PyTorch"}


def _gpu_precision() -> str:
    """" (TF32)" where the GPU reference's runs computed in another precision than they record."""
    note = precision_note(GPU_REFERENCE)
    return f" ({note['ran_as'].upper()})" if note else ""


def cnn_elsewhere(out: Path) -> str:
    """The line that stands in for the CNN when this report leaves it out."""
    ref = GPU_REFERENCE / "REPORT.md"
    if ref.exists():
        return (f"**Part 2 (the CNN) is not in this report** (left out with `--skip cnn`: its 30 epochs take hours "
                f"on a CPU). Its results on a GPU are in [the GPU reference{_gpu_precision()}]"
                f"({os.path.relpath(ref, out)}).")
    return "**Part 2 (the CNN) is not in this report** (left out with `--skip cnn`)."


def header(plan: Plan, results: dict, *, total_s: float, data_source: str, data_note: str,
           command: str = "", note: dict | None = None) -> list[str]:
    """The title, how and where the report was made (for a re-render: where its runs ran), what it left out."""
    prov = results.get("provenance")  # a re-render (--render-only): the runs' own devices and versions
    dev = prov["devices"] if prov else jax_device_info()
    v = prov["versions"] if prov else package_versions()
    kind = "QUICK run (scaled down, see below)" if plan.quick else "full run"
    torch_ran = any("torch" in s for s in results["toy"].values()) or bool(results.get("frameworks"))
    also = f", PyTorch {v['torch']}" if torch_ran and v.get("torch") else ""
    command = command or f"python -m train report{' --quick' if plan.quick else ''}"
    when = f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC"
    made = (f"re-rendered {when} from its committed runs (nothing trained) by `{command}`; the runs ran on"
            if prov else f"generated {when} by `{command}` in {total_s / 60:.1f} min on")
    L = [f"# Report: the original assignment, reproduced in JAX/Flax and NumPy{' (and PyTorch)' if also else ''}", "",
         f"**{kind}**, {made} "
         f"{dev.get('local_device_count')} {dev.get('platform')} device(s) ({dev.get('device_kind')}); "
         f"jax {v.get('jax')}, flax {v.get('flax')}, optax {v.get('optax')}, numpy {v.get('numpy')}{also}. "
         f"The runs it shows took {runs_wall_s(results) / 60:.1f} min of wall time in all, reused ones "
         f"included.", "",
         f"CIFAR-10 source: `{data_source}`.", "", seeds_line(plan), ""]
    if note:
        L += [f"**Precision: {note['ran_as'].upper()}.** The runs' config.json records `{note['recorded']}`, "
              f"but they computed in {note['ran_as'].upper()}: {note['why']}", ""]
    if data_note:
        L += [data_note, ""]
    if plan.quick:
        L += ["> This is a **quick** report: every experiment was scaled down so that the whole report runs in "
              "minutes on a 2-core CPU. Accuracies of the scaled experiments are not comparable with the "
              "original's full-length results. What was scaled:", ">"]
        L += [f"> - {s}" for s in plan.scaled] + [""]
    if plan.parts != PARTS:
        left = [p for p in PARTS if p not in plan.parts]
        L += [f"Parts in this report: {', '.join(plan.parts)}; **left out**: {', '.join(left)} "
              f"(`--parts`/`--skip`).", ""]
    return L


def seeds_line(plan: Plan) -> str:
    """How many seeds stand behind the seed-dependent verdicts, and what fewer than 3 means."""
    n = {"T=19": plan.t19_seeds if plan.rnn_t19 is not None else None,
         "the CIFAR MLPs and their PyTorch twins": plan.mlp_seeds if any(c.model == "mlp" for c in plan.cifar) else None,
         "the length sweeps": (plan.sweep or plan.ablation or {}).get("seeds")}
    said = "; ".join(f"{what}: {k}" for what, k in n.items() if k)
    few = [f"{what} ({'single' if k == 1 else 'two'}-seed)" for what, k in n.items() if k and k < 3]
    return (f"**Seeds** (seed, seed + 1, ...; `--seeds {plan.seeds}`): {said or 'no seed-dependent part'}. Each "
            "seed-dependent verdict states n and its 95% interval. The CNN, the toy sets and T=19's PyTorch twin run "
            "one seed." + (f" **Fewer than 3 seeds, so their verdicts rest on one or two runs: {', '.join(few)}.**"
                           if few else ""))


def toy_section(plan: Plan, results: dict, out: Path) -> list[str]:
    """Part 1, Tasks 1-2: the three toy sets, NumPy and JAX side by side."""
    if not results["toy"]:
        return []
    seed, toy = plan.toy[0].seed, out / "mlp-toy"
    fws = [fw for fw in TOY_FRAMEWORKS if any(fw in s for s in results["toy"].values())]
    L = ["## Part 1, Tasks 1-2: NumPy MLP vs JAX MLP on toy data", "",
         "Linear(2 -> 20) + ReLU + Linear(20 -> 2), SGD lr 0.01, 1,500 steps, batch 30, evaluation every 30 "
         f"steps. {', '.join(NAMES[fw] for fw in fws)} start from the same weights and see the same batches, so "
         "their curves coincide (the comparison with PyTorch: the cross-framework section below).",
         "", _fig(out, toy / f"datasets-s{seed}.png", "the three toy data sets"), "", HEADER]
    L += [_summary_row(f"{name} {fw}", s[fw]) for name, s in results["toy"].items() for fw in fws if fw in s]
    L += ["", "| data set | max abs loss difference NumPy vs JAX (all evaluations) | final test acc difference |",
          "|---|---|---|"]
    for name, s in results["toy"].items():
        c = numpy_vs_jax(s["compare"])
        L.append(f"| {name} | {c['max_abs_loss_diff']:.2e} | {100 * c['final_test_accuracy_diff']:.2f} points |")
    L.append("")
    for name in results["toy"]:
        def figs(file, what):
            return " ".join(_fig(out, toy / f"{name}-{fw}-s{seed}" / file, f"{name} {fw} {what}")
                            for fw in fws if fw in results["toy"][name])
        L += [f"### {name}", "", _fig(out, toy / f"{name}-compare-s{seed}" / "curves.png", f"{name} overlay"),
              "", figs("curves.png", "curves"), "", figs("decision_boundary.png", "decision boundary"), ""]
    return L


def cifar_section(plan: Plan, results: dict, out: Path) -> list[str]:
    """Part 1 Task 3 and Part 2: the runs' table, each run's figures, per-class accuracy."""
    L = []
    first = {f"{c.experiment}/{c.run_name}" for c in plan.cifar}  # each model's first seed: figures, per class
    if results["cifar"]:
        L += ["## Part 1, Task 3 (CIFAR MLP) and Part 2 (CNN) on CIFAR-10", "", HEADER]
        L += [_summary_row(key, s) for key, s in results["cifar"].items()] + [""]
        for key, s in ((k, s) for k, s in results["cifar"].items() if k in first):
            run = out / key
            best_acc_epoch, low_loss_epoch = _best_epoch(run / "metrics.jsonl")
            L += [f"### {key}", "",
                  f"Best test accuracy at epoch {best_acc_epoch}; lowest test loss at epoch {low_loss_epoch} "
                  f"of {s.get('epochs')}; {s.get('time_per_epoch_s', 0):.2f} s per epoch.", "",
                  _fig(out, run / "curves.png", f"{key} curves"), "",
                  _fig(out, run / "confusion.png", f"{key} confusion matrix") + " " +
                  _fig(out, run / "misclassified.png", f"{key} misclassified"), ""]
    per_class = {k: s["per_class_test_accuracy"] for k, s in results["cifar"].items()
                 if "per_class_test_accuracy" in s and k in first}
    if per_class:
        classes = list(next(iter(per_class.values())))
        L += ["Test accuracy per class:", "", "| run | " + " | ".join(classes) + " |",
              "|---|" + "---|" * len(classes)]
        L += [f"| {k} | " + " | ".join(_pct(v[c]) for c in classes) + " |" for k, v in per_class.items()] + [""]
    if "cnn" not in plan.parts:
        L += [cnn_elsewhere(out), ""]
    return L


def init_grad_ratios(sweep: dict | None) -> list[tuple[str, int, float]]:
    """(cell, T, dL/dh_1 / dL/dh_T at initialisation) for every sweep run."""
    out = []
    for r in (sweep or {}).get("runs", []):
        g = r["grad_norms"]["init"]
        out.append((r["cell"], r["input_length"], g[0] / g[-1] if g[-1] else float("nan")))
    return out


def rnn_section(plan: Plan, results: dict, out: Path) -> list[str]:
    """Part 3: T=19, the sweep's accuracy per length and the gradient evidence."""
    L = []
    t19 = results["rnn"].get("t19_seeds")
    if t19:
        run = out / "rnn-palindrome" / plan.rnn_t19.run_name
        L += ["## Part 3: vanilla RNN on palindromes", "", HEADER,
              *(_summary_row(f"T=19 {plan.rnn_t19.cell} seed {plan.rnn_t19.seed + k}", s) for k, s in enumerate(t19)),
              "",
              _fig(out, run / "curves.png", "T=19 curves") + " " +
              _fig(out, run / "grad_norms.png", "T=19 gradient norms"), ""]
    sweep = results["rnn"].get("sweep")
    if sweep is None:
        return L
    L += ["### Accuracy against sequence length", "",
          _fig(out, out / "rnn-sweep" / "accuracy_vs_length.png", "accuracy vs length") + " " +
          _fig(out, out / "rnn-sweep" / "grad_norms_short_vs_long.png", "gradient norms short vs long"), ""]
    lengths = sweep["lengths"]
    L += ["| cell | " + " | ".join(f"T={t}" for t in lengths) + " |", "|---|" + "---|" * len(lengths)]
    for cell in sweep["summary"]:
        accs = [[r["test_accuracy"] for r in sweep["runs"] if r["cell"] == cell and r["input_length"] == t]
                for t in lengths]
        d = [describe(a) for a in accs]
        L.append(f"| {cell} (mean ± sample std over {d[0]['n']} seed(s)) | " +
                 " | ".join(f"{100 * x['mean']:.1f}" + ("" if x["std"] is None else f" ± {100 * x['std']:.1f}") + "%"
                            for x in d) + " |")
    L += ["", "**Why long sequences fail.** The gradient figure shows the mean norm of dL/dh_t for every step t: "
          "for the vanilla RNN it shrinks geometrically from the last step back to the first, so the first digit "
          "(the one that decides the label) receives almost no learning signal when T is long." +
          (" The LSTM's additive cell state keeps that gradient alive." if "lstm" in sweep["cells"] else ""), ""]
    ratios = median_grad_ratios(init_grad_ratios(sweep))
    if ratios:
        L += ["| cell | T | dL/dh_1 / dL/dh_T at initialisation (median over seeds) | seeds |", "|---|---|---|---|"]
        L += [f"| {c} | {t} | {q:.2e} | {n} |" for (c, t), (q, n) in ratios.items()] + [""]
    return L


def render(plan: Plan, results: dict, out: Path, *, total_s: float, data_source: str, data_note: str,
           log: list[str], command: str = "") -> str:
    L = header(plan, results, total_s=total_s, data_source=data_source, data_note=data_note, command=command,
               note=precision_note(out))
    L += toy_section(plan, results, out) + cifar_section(plan, results, out) + rnn_section(plan, results, out)
    if results["rnn"].get("ablation") is not None:
        L += schedule_section(plan, results, out)
    L += frameworks.section(plan, results, out)
    L += comparison(plan, results, out, sweep=results["rnn"].get("sweep"),
                    ratios=init_grad_ratios(results["rnn"].get("sweep")))
    L += ["", *deviations(plan, data_source, out=out, results=results), "", *figure_map(plan, out)]
    L += ["", "## How this report was made", "",
          "Runs (a finished run with unchanged settings is reused; `--force` reruns):", ""]
    L += [f"- {x}" for x in log] + [""]
    return "\n".join(L) + "\n"
