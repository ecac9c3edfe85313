"""The report's "Where our runs differ from the original's": every deviation, its numbers from the plan.

Counts (images and palindromes dropped per epoch, the learning-rate schedule) are computed from the
plan's configs and the data sizes, never typed in, so a quick report and a full one each state their own.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from data.cifar10 import parse_synthetic_size
from data.palindrome import split_sizes
from train.report.plan import Plan

CIFAR_TRAIN = 50_000  # CIFAR-10's training split
# A report folder may hold this file when its runs' recorded precision is not what they ran at
# (results/reference-gpu: recorded fp32, ran TF32 before --precision fp32 meant full fp32).
PRECISION_NOTE = "precision.json"


def precision_note(out: Path | None) -> dict | None:
    """``{"recorded": ..., "ran_as": ..., "why": ...}`` from ``<out>/precision.json``, or None."""
    if out is None:
        return None
    try:
        return json.loads((Path(out) / PRECISION_NOTE).read_text())
    except (OSError, ValueError):
        return None


def cifar_n_train(cfg, data_source: str) -> int:
    """Training images a CIFAR run sees: the source's training split, cut to ``limit_train``."""
    kind, _, arg = data_source.partition(":")
    n = parse_synthetic_size(data_source, arg or None) if kind == "synthetic" else CIFAR_TRAIN
    return min(n, cfg.limit_train) if cfg.limit_train else n


def dropped_batches(plan: Plan, data_source: str) -> list[tuple[str, int, int, int]]:
    """(run, training examples, batch, examples dropped per epoch) for every trained run of the plan."""
    rows = []
    for c in plan.cifar:
        n = cifar_n_train(c, data_source)
        rows.append((f"{c.experiment}/{c.run_name}", n, c.batch_size, n % c.batch_size))
    rnn_cfgs = [plan.rnn_t19] if plan.rnn_t19 is not None else []
    for part in (plan.sweep, plan.ablation):
        if part and part.get("cells"):
            rnn_cfgs += [dataclasses.replace(part["cfg"], input_length=t) for t in part["lengths"]]
    seen = set()
    for c in rnn_cfgs:
        n = split_sizes(c.input_length, c.data_size, c.portion_train)[0]
        key = (c.input_length, n, c.batch_size)
        if key not in seen:
            seen.add(key)
            rows.append((f"palindromes T={c.input_length}", n, c.batch_size, n % c.batch_size))
    return rows


def dropped_text(plan: Plan, data_source: str) -> str:
    rows = dropped_batches(plan, data_source)
    lost = [f"{d:,} of {n:,} ({100 * d / n:.2f}%) for {what} at batch {b}" for what, n, b, d in rows if d]
    none = [what for what, n, b, d in rows if not d]
    text = ("- **The last partial batch is dropped** each epoch (a new shuffle every epoch, so a different "
            "remainder each time): " + ("; ".join(lost) if lost else "nothing is lost at these sizes") + ".")
    if none and lost:
        text += f" Nothing is dropped for {', '.join(none)}."
    return text


def steplr_text(plan: Plan) -> str:
    """The StepLR sentence, from the RNN configs' lr, lr_step, lr_gamma and epochs."""
    named = ([("T=19", plan.rnn_t19)] if plan.rnn_t19 is not None else []) + (
        [("the sweep", plan.sweep["cfg"])] if plan.sweep and plan.sweep.get("cells") else [])
    if not named:
        return ""
    parts: dict[tuple, list[str]] = {}
    for what, c in named:
        parts.setdefault((c.lr, c.lr_step, c.lr_gamma, c.epochs), []).append(what)
    said = []
    for (lr, step, gamma, epochs), whats in parts.items():
        decays = (epochs - 1) // step
        end = (f"so over {epochs} epochs the rate falls from {lr:g} to {lr * gamma ** decays:g} from epoch "
               f"{decays * step + 1} on" if decays and gamma != 1 else f"so the rate stays {lr:g} over {epochs} epochs")
        said.append(f"step {step}, factor {gamma:g} for {' and '.join(whats)}, {end}")
    text = ("- **StepLR's step and factor** are not given by the original: we assume " + "; ".join(said) + ".")
    if plan.ablation:
        return text + " The schedule ablation above (constant rate, `--lr-gamma 1`) measures what that choice costs."
    return text + " (The `schedule` part of the report measures what that choice costs.)"


def precision_text(plan: Plan, note: dict | None) -> str:
    """What precision the runs computed in: the configs' setting, or what ``note`` says they ran at."""
    cfgs = [*plan.cifar, *([plan.rnn_t19] if plan.rnn_t19 is not None else []),
            *([plan.sweep["cfg"]] if plan.sweep else [])]
    names = sorted({c.precision for c in cfgs}) or ["fp32"]
    if note:
        return (f"- **Precision: {note['ran_as'].upper()}**, not the `{note['recorded']}` the runs' config.json "
                f"records: {note['why']} PyTorch, the original's framework, computes float32 matmuls in full "
                "precision by default.")
    if names == ["fp32"]:
        return ("- **Precision**: fp32 with full-precision matmuls (as PyTorch's default); on a GPU, XLA's default "
                "would be TF32 (`--precision tf32`), which changes the vanilla RNN's results.")
    return f"- **Precision**: {', '.join(names)} (`--precision`); PyTorch's default is full fp32."


def cifar_texts(plan: Plan, results: dict | None) -> list[str]:
    """AdamW's decay, input standardisation, the improved MLP's layers and devices."""
    if not plan.cifar:
        return []
    decays = sorted({c.weight_decay for c in plan.cifar})
    L = [f"- **AdamW's weight decay** is not given by the original: we use {', '.join(f'{d:g}' for d in decays)} "
         "(PyTorch's AdamW default), decoupled, on every parameter (biases and batch-norm scales included, as "
         "PyTorch's AdamW does without parameter groups).",
         "- **Input standardisation**: the original's preprocessing is not given; we standardise each colour "
         "channel with the training images' mean and std (stored in each run's config.json)."]
    improved = [c for c in plan.cifar if c.model == "mlp" and c.variant == "improved"]
    for c in improved:
        key = f"{c.experiment}/{c.run_name}"
        ran = (results or {}).get("cifar", {}).get(key)
        where = (f"on {ran['devices']} {ran['platform']} device(s)" if ran else
                 "on one device" if c.devices == 1 else "on every local device (`--devices 0`)")
        L += [f"- **The improved MLP's layers**: the original says only that it adds dropout and batch "
              f"normalisation. Ours: Linear -> BatchNorm -> ReLU -> Dropout({c.dropout:g}) after every hidden "
              "layer, none after the output layer; batch norm with PyTorch's momentum 0.1 and eps 1e-5. "
              "The rate and the order are our choice.",
              f"- **The improved MLP trained {where}**; the original trained it data-parallel on several GPUs. "
              "With several devices our batch norm averages its statistics over the whole global batch."]
    return L


def deviations(plan: Plan, data_source: str, *, out: Path | None = None, results: dict | None = None) -> list[str]:
    """Every way our runs differ from the original's, with its expected effect."""
    L = ["## Where our runs differ from the original's", ""]
    if plan.cifar and data_source.startswith("folder:") and "jpg" in data_source:
        L.append("- **CIFAR-10 is a JPEG copy** (re-encoded at quality ~75) of the lossless original: fine texture "
                 "is blurred and blocky, so expect test accuracies a point or two below the original's, the CNN's "
                 "more than the MLP's (the acceptance bar for the CNN is 73% against the original's ~75%).")
    elif plan.cifar and data_source.startswith("synthetic"):
        L.append("- **CIFAR-10 was synthetic** in this report: its CIFAR accuracies say nothing about CIFAR-10.")
    if plan.toy:
        L.append("- **Toy data settings** are not given by the original: ours are 1,000 samples, an 80/20 split, "
                 "noise 0.2 (moons), noise 0.1 with factor 0.5 (circles), two blobs with std 1.0, features "
                 "standardised. Absolute toy accuracies depend on the noise; the NumPy-vs-framework comparison "
                 "does not.")
    L += cifar_texts(plan, results)
    if plan.cifar or plan.rnn_t19 is not None or plan.sweep:
        L.append("- **Train accuracy and loss** of an epoch are the mean over its training steps in train mode "
                 "(dropout on, batch statistics), as the original's loop measured them: they trail the end-of-epoch "
                 "model by about half an epoch and sit below an eval-mode pass for the improved MLP. `--eval-train` "
                 "measures the whole training split in eval mode instead." +
                 (" The toy MLP evaluates both splits in eval mode every 30 steps." if plan.toy else ""))
        L.append(dropped_text(plan, data_source))
    if plan.rnn_t19 is not None:
        L.append(f"- **The sequence length of Part 3's main run**: the original's parameter list says "
                 f"`input_length = 15`, while its figures 10-11 show T=19; we run T={plan.rnn_t19.input_length}, "
                 "as its figures do" + (" (the length sweep covers T=15)." if 15 in (plan.sweep or {}).get(
                     "lengths", []) else "."))
    L += [x for x in (steplr_text(plan), precision_text(plan, precision_note(out))) if x]
    L.append("- **Initialisation and data order** follow PyTorch's defaults (Kaiming-uniform weights, uniform "
             "biases) but not its random streams: curves match the original's in shape, not step by step.")
    return L
