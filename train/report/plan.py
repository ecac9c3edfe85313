"""The report's plan: which experiments run, at which settings, for which parts."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from data.toy import DATASETS
from train.experiments import cifar, mlp_toy, rnn
from train.errors import UsageError
from train.backends.torch_backend import torch_available

ROOT = Path(__file__).resolve().parents[2]
SHARED_CIFAR = ROOT.parent / "shared" / "datasets" / "cifar10-jpg"


# sweep: the vanilla RNN over lengths; lstm: the same sweep with an LSTM; schedule: the sweep at a constant rate;
# torch: the PyTorch twins of the CIFAR MLPs and T=19 (of those parts that run).
PARTS = ("toy", "mlp", "cnn", "t19", "sweep", "lstm", "schedule", "torch")


def parse_parts(text: str | None, skip: str | None = None) -> tuple[str, ...]:
    """--parts / --skip -> the parts to run, in PARTS order."""
    def names(t):
        got = [x.strip() for x in t.split(",") if x.strip()]
        bad = [x for x in got if x not in PARTS]
        if bad:
            raise UsageError(f"unknown report part(s) {', '.join(bad)}; choose from {', '.join(PARTS)}")
        return set(got)
    chosen = names(text) if text else set(PARTS)
    chosen -= names(skip) if skip else set()
    if not chosen:
        raise UsageError("--parts/--skip leave no part to run")
    return tuple(p for p in PARTS if p in chosen)


@dataclass
class Plan:
    """Every experiment's settings for one report; ``scaled`` says, in words, what a quick run cut."""

    quick: bool
    toy: list = field(default_factory=list)
    cifar: list = field(default_factory=list)
    rnn_t19: object = None
    sweep: dict = field(default_factory=dict)
    ablation: dict = field(default_factory=dict)   # the sweep at a constant learning rate (StepLR factor 1)
    scaled: list[str] = field(default_factory=list)
    parts: tuple[str, ...] = PARTS
    # PyTorch twins of JAX runs (same initial weights and batches), compared with them; none without torch.
    torch: bool = False
    twins: list = field(default_factory=list)
    # Seeds of the seed-dependent runs (seed, seed+1, ...): the CIFAR MLPs with their PyTorch twins, and T=19
    # (its PyTorch twin and the CNN run one seed); the sweeps carry their own count. ``seeds``: what was asked.
    seeds: int = 1
    mlp_seeds: int = 1
    t19_seeds: int = 1


def resolve_data(data: str) -> tuple[str, str]:
    """'auto' -> the shared image folder if present, else tfds if prepared, else synthetic. Returns (source, note)."""
    if data != "auto":
        return data, ""
    if SHARED_CIFAR.is_dir():
        return f"folder:{SHARED_CIFAR}", ""
    try:
        import tensorflow_datasets as tfds
        if tfds.builder("cifar10").is_prepared():
            return "tfds", ""
    except Exception:  # noqa: BLE001 - any failure means tfds is not usable here
        pass
    return "synthetic:10000", ("**No CIFAR-10 was found** (neither ../shared/datasets/cifar10-jpg nor a prepared "
                               "tfds build), so the CIFAR experiments ran on *synthetic* data: their accuracies "
                               "say nothing about CIFAR-10.")


def seed_runs(cfg, n: int) -> list:
    """``cfg`` for seeds cfg.seed, cfg.seed + 1, ... (n of them): each an ordinary run with its own folder."""
    return [dataclasses.replace(cfg, seed=cfg.seed + k) for k in range(n)]


def seed_count(plan: Plan, cfg) -> int:
    """How many seeds of ``cfg`` (a CIFAR or T=19 run, JAX or a twin) the plan trains."""
    if isinstance(cfg, rnn.RNNConfig):
        return plan.t19_seeds if cfg.framework == "jax" else 1
    return plan.mlp_seeds if cfg.model == "mlp" else 1


def make_plan(quick: bool, data: str, seed: int, seeds: int = 3) -> Plan:
    if seeds < 1:
        raise UsageError(f"--seeds must be at least 1, got {seeds}")
    plan = Plan(quick=quick, torch=torch_available(), seeds=seeds, t19_seeds=seeds, mlp_seeds=1 if quick else seeds)
    # Toy: NumPy and JAX (the original's comparison), and PyTorch where installed.
    toy_fw = "all" if plan.torch else "both"
    plan.toy = [mlp_toy.ToyConfig(dataset=d, framework=toy_fw, seed=seed, devices=1) for d in DATASETS]
    if quick:
        plan.cifar = [
            cifar.mlp_config(data=data, variant="plain", epochs=4, limit_train=10000, seed=seed),
            cifar.mlp_config(data=data, variant="improved", epochs=4, limit_train=10000, seed=seed),
            cifar.cnn_config(data=data, epochs=2, limit_train=1024, limit_test=256, batch_size=32,
                             eval_batch=128, seed=seed),
        ]
        plan.rnn_t19 = rnn.RNNConfig(input_length=19, data_size=20000, epochs=6, lr_step=4, seed=seed)
        plan.sweep = {"cfg": rnn.RNNConfig(data_size=10000, epochs=5, lr_step=4, seed=seed),
                      "lengths": [5, 10, 20, 30], "seeds": 1, "cells": ["vanilla", "lstm"]}
        plan.ablation = {**plan.sweep, "cfg": dataclasses.replace(plan.sweep["cfg"], lr_gamma=1.0),
                         "cells": ["vanilla"]}
        plan.scaled = [
            "Part 1 Tasks 1-2: the original's full recipe (1,500 steps), not scaled.",
            "Part 1 Task 3: 4 epochs (not 50) on 10,000 of the 50,000 training images; full test set.",
            "Part 2: the CNN for 2 epochs (not 30) on 1,024 training images, batch 32 (not 256), 256 test "
            "images (convolutions are slow on a CPU).",
            "Part 3: T=19 with 20,000 palindromes (not 100,000) for 6 epochs (not 30), StepLR every 4; "
            "the sweep over T = 5, 10, 20, 30 with 10,000 palindromes, 5 epochs, one seed, vanilla and LSTM; "
            "its constant-rate ablation likewise, vanilla only.",
        ]
    else:
        plan.cifar = [cifar.mlp_config(data=data, variant="plain", seed=seed),
                      cifar.mlp_config(data=data, variant="improved", seed=seed),
                      cifar.cnn_config(data=data, seed=seed)]
        plan.rnn_t19 = rnn.RNNConfig(input_length=19, seed=seed)
        # The sweeps never drop below the 3 seeds their committed runs (and the original's figures) have,
        # so a cheaper --seeds for T=19 and the MLPs still reads them back whole.
        plan.sweep = {"cfg": rnn.RNNConfig(seed=seed), "lengths": [5, 10, 15, 20, 25, 30], "seeds": max(seeds, 3),
                      "cells": ["vanilla", "lstm"]}
        plan.ablation = {**plan.sweep, "cfg": rnn.RNNConfig(seed=seed, lr_gamma=1.0), "cells": ["vanilla"]}
    # The MLPs and T=19 have cheap PyTorch twins on a CPU; the CNN's would take hours.
    if plan.torch:
        plan.twins = [dataclasses.replace(c, framework="torch") for c in plan.cifar if c.model == "mlp"]
        plan.twins.append(dataclasses.replace(plan.rnn_t19, framework="torch"))
        if quick:
            plan.scaled.append("PyTorch: the toy sets, both CIFAR MLPs and T=19 at the settings above; "
                               "no PyTorch CNN (hours on a CPU).")
    if quick:
        plan.scaled.append(f"Seeds: T=19 with {plan.t19_seeds}; the CIFAR MLPs, their PyTorch twins and the sweeps "
                           "with one (each further seed of the MLPs in JAX and PyTorch costs minutes), so their "
                           "verdicts are single-seed; the full report runs every one with `--seeds` (3) seeds.")
    return plan


def twin_part(cfg) -> str:
    """The report part a PyTorch twin belongs to: mlp (a CIFAR MLP) or t19."""
    return "t19" if isinstance(cfg, rnn.RNNConfig) else "mlp"


def twin_key(cfg) -> str:
    """A twin's entry in the report's cross-framework results: t19, mlp (the plain MLP) or mlp-improved."""
    part = twin_part(cfg)
    return part if part == "t19" or cfg.variant == "plain" else f"{part}-{cfg.variant}"


def select_parts(plan: Plan, parts: tuple[str, ...]) -> Plan:
    """The plan with only ``parts`` left in it."""
    cells = [c for c, part in (("vanilla", "sweep"), ("lstm", "lstm")) if part in parts and c in plan.sweep["cells"]]
    return dataclasses.replace(
        plan, parts=parts, toy=plan.toy if "toy" in parts else [],
        cifar=[c for c in plan.cifar if c.model in parts],  # the parts mlp and cnn are the models
        rnn_t19=plan.rnn_t19 if "t19" in parts else None, sweep={**plan.sweep, "cells": cells} if cells else {},
        ablation=plan.ablation if "schedule" in parts else {},
        twins=[c for c in plan.twins if "torch" in parts and twin_part(c) in parts])
