"""`python -m train report` on a tiny plan: the report step of `device_run.sh --dry-run`.

    python scripts/dry_report.py [report options]

The same CLI, parts and rendering as the real step, but every experiment shrunk further than
--quick (which trains for minutes on a CPU): a handful of steps each, so that the dry run checks the
step's wiring, not the experiments (the report's own tests check those).
"""

from __future__ import annotations

import dataclasses
import importlib.abc
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from train.cli import main  # noqa: E402
from train.experiments import cifar, mlp_toy, rnn  # noqa: E402
from train.report import plan as report_plan  # noqa: E402


def tiny_plan(quick: bool, data: str, seed: int, seeds: int = 3) -> report_plan.Plan:
    """Every part's runs at a few steps, one seed each: one toy set in NumPy and JAX, the plain CIFAR
    MLP, T=19, a two-length sweep per cell and its ablation. No CNN (its convolutions compile for
    a minute on a CPU) and no PyTorch (its import alone costs each call seconds; the dry benches
    run it): a dry run never asks for those parts, and the report's own tests cover them."""
    plan = report_plan.Plan(quick=True, torch=False, seeds=1)
    plan.toy = [mlp_toy.ToyConfig(dataset="moons", steps=30, samples=100, seed=seed, devices=1, framework="both")]
    plan.cifar = [cifar.mlp_config(data=data, epochs=1, batch_size=64, hidden="16", limit_train=256, seed=seed)]
    plan.rnn_t19 = rnn.RNNConfig(input_length=19, data_size=256, epochs=1, batch_size=64, hidden=8, seed=seed)
    plan.sweep = {"cfg": rnn.RNNConfig(data_size=256, epochs=1, batch_size=64, hidden=8, seed=seed),
                  "lengths": [3, 5], "seeds": 1, "cells": ["vanilla", "lstm"]}
    plan.ablation = {**plan.sweep, "cfg": dataclasses.replace(plan.sweep["cfg"], lr_gamma=1.0), "cells": ["vanilla"]}
    plan.scaled = ["a dry run of scripts/device_run.sh: every experiment at a few steps (scripts/dry_report.py)"]
    return plan


class NoTorch(importlib.abc.MetaPathFinder):
    """``import torch`` fails as on a machine without it. Not ``sys.modules["torch"] = None``: SciPy's
    array-API checks read sys.modules["torch"].Tensor whenever the key is there."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torch":
            raise ModuleNotFoundError(f"No module named {name!r} (a dry run's report runs without PyTorch)", name=name)
        return None


if __name__ == "__main__":
    report_plan.make_plan = tiny_plan
    # The report as on a machine without PyTorch (a case it handles): its rendering would import torch
    # even to say that no part used it.
    sys.meta_path.insert(0, NoTorch())
    sys.exit(main(["report", *sys.argv[1:]]))
