"""The training loop's bookkeeping, with a scripted backend: train rows from steps, timing apart, multi-run."""

import time

import numpy as np
import pytest

from train.experiments import cifar
from train.loop import train_loop
from train.results import read_jsonl


class Scripted:
    """A backend whose per-step metrics are a known function of the batch, and whose compile takes 0.2 s."""

    framework = "fake"
    devices = 1
    param_count = 0

    def __init__(self, eval_train=False):
        self.compile_time_s = 0.0
        self.splits = ("train", "test") if eval_train else ("test",)

    def train(self, idx):
        if self.compile_time_s == 0:
            time.sleep(0.2)
            self.compile_time_s = 0.2  # the loop must not count this as training time
        return {"loss": idx[:, 0].astype(np.float64), "accuracy": idx[:, 1] / 100.0}

    def evaluate(self):
        return {s: {"loss": 9.0, "accuracy": 0.5, "count": 10} for s in self.splits}


SCHEDULE = [np.array([[1, 10], [2, 30], [6, 50]], np.int32), np.array([[3, 40], [5, 60], [7, 80]], np.int32)]


def test_train_row_is_the_mean_of_the_periods_steps(tmp_path):
    log, timing = train_loop(Scripted(), SCHEDULE, tmp_path, epochs=True, progress=False)
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert [(r["epoch"], r["split"]) for r in rows] == [(1, "train"), (1, "test"), (2, "train"), (2, "test")]
    assert rows[0]["loss"] == pytest.approx(3.0) and rows[0]["accuracy"] == pytest.approx(0.3)
    assert rows[2]["loss"] == pytest.approx(5.0) and rows[2]["accuracy"] == pytest.approx(0.6)
    assert rows[1]["loss"] == 9.0
    assert timing["steps"] == 6 and timing["train_examples"] == 12
    assert timing["compile_time_s"] == 0.2 and timing["train_time_s"] < 0.1
    assert timing["wall_time_s"] >= 0.2 + timing["train_time_s"] + timing["eval_time_s"]


def test_evaluated_train_split_wins_over_step_means(tmp_path):
    train_loop(Scripted(eval_train=True), SCHEDULE, tmp_path, epochs=True, progress=False)
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["loss"] for r in rows if r["split"] == "train"] == [9.0, 9.0]


def test_eval_train_changes_only_the_train_rows(tmp_path):
    cfg = cifar.mlp_config(data="synthetic:256", epochs=2, batch_size=64, hidden="32,16", devices=1)
    runs = {}
    for flag in (False, True):
        c = cifar.CifarConfig(**{**cfg.__dict__, "eval_train": flag})
        cifar.train_and_evaluate(c, tmp_path / str(flag), progress=False, checkpoint_every=0)
        runs[flag] = read_jsonl(tmp_path / str(flag) / c.run_name / "metrics.jsonl")
    test = {f: [(r["loss"], r["accuracy"]) for r in rows if r["split"] == "test"] for f, rows in runs.items()}
    train = {f: [r["loss"] for r in rows if r["split"] == "train"] for f, rows in runs.items()}
    assert test[False] == test[True]  # the same training, bit for bit
    assert len(train[False]) == len(train[True]) == 2
    # Epoch 1's step mean includes the untrained first steps; the eval pass sees the trained model.
    assert train[False][0] > train[True][0] + 1e-3
