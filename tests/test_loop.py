"""The training loop's bookkeeping, with a scripted backend: train rows from steps, timing apart, multi-run."""

import time

import numpy as np
import pytest

from data.toy import make_toy_data
from train.experiments import cifar, mlp_toy
from train.engine.loop import train_loop
from train.engine.results import read_jsonl


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
    [(log, timing)] = train_loop(Scripted(), [SCHEDULE], [tmp_path], epochs=True, progress=False)
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert [(r["epoch"], r["split"]) for r in rows] == [(1, "train"), (1, "test"), (2, "train"), (2, "test")]
    # Means of scripted small integers (and hundredths): exact but for float rounding.
    assert rows[0]["loss"] == pytest.approx(3.0) and rows[0]["accuracy"] == pytest.approx(0.3)
    assert rows[2]["loss"] == pytest.approx(5.0) and rows[2]["accuracy"] == pytest.approx(0.6)
    assert rows[1]["loss"] == 9.0
    assert timing["steps"] == 6 and timing["train_examples"] == 12
    assert timing["compile_time_s"] == 0.2 and timing["train_time_s"] < 0.1
    assert timing["wall_time_s"] >= 0.2 + timing["train_time_s"] + timing["eval_time_s"]


class TwoRuns:
    """Two scripted runs side by side: a backend that speaks lists of its ``runs``."""

    framework, devices, param_count, runs = "fake", 1, 0, 2

    def __init__(self):
        self.one = [Scripted(), Scripted()]

    @property
    def compile_time_s(self):
        return sum(b.compile_time_s for b in self.one)

    def train(self, idx):
        assert idx.shape == (2, 3, 2)
        return [b.train(i) for b, i in zip(self.one, idx)]

    def evaluate(self):
        return [b.evaluate() for b in self.one]


def test_runs_side_by_side_log_what_each_logs_alone(tmp_path):
    other = [s + 1 for s in SCHEDULE]
    out = train_loop(TwoRuns(), [SCHEDULE, other], [tmp_path / "a", tmp_path / "b"], epochs=True, progress=False)
    alone = [train_loop(Scripted(), [s], [tmp_path / f"alone{i}"], epochs=True, progress=False)[0][0]
             for i, s in enumerate((SCHEDULE, other))]
    strip = lambda rows: [{k: v for k, v in r.items() if k != "time_s"} for r in rows]  # noqa: E731
    assert [strip(log.rows) for log, _ in out] == [strip(log.rows) for log in alone]
    assert strip(out[1][0].rows)[0]["loss"] == pytest.approx(4.0)  # the mean of 2, 3 and 7
    assert [t["steps"] for _, t in out] == [6, 6] and out[0][1]["runs"] == 2
    with pytest.raises(ValueError, match="2 run"):
        train_loop(TwoRuns(), [SCHEDULE], [tmp_path / "a"], progress=False)


def test_evaluated_train_split_wins_over_step_means(tmp_path):
    train_loop(Scripted(eval_train=True), [SCHEDULE], [tmp_path], epochs=True, progress=False)
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


@pytest.mark.parametrize("precision, highest", [("fp32", True), ("tf32", False), ("bf16", False)])
def test_the_trainer_compiles_at_the_runs_precision(precision, highest):
    """The resolved precision is a value the JAX trainer applies where it lowers and compiles, whatever
    the ambient matmul precision (the tests run under 'highest'); so is the toy MLP's fixed fp32."""
    import jax
    import jax.numpy as jnp

    from train.backends.jax_trainer import AotCache

    cfg = cifar.mlp_config(precision=precision)
    cache = AotCache(precision=cfg.resolved_precision)
    f = jax.jit(lambda a, b: a @ b)
    cache("mm", f, jnp.ones((4, 4)), jnp.ones((4, 4)))
    text = next(iter(cache._exes.values())).as_text()
    assert ("operand_precision={highest,highest}" in text) == highest
    assert cfg.run_name.startswith(f"plain-{precision}-")
    toy = mlp_toy.make_backend(mlp_toy.quick(), "jax", make_toy_data("moons", n_samples=40, seed=0))
    assert toy.precision.matmul == "highest"


class WithState(Scripted):
    """A scripted backend with a state to checkpoint."""

    def __init__(self):
        super().__init__()
        self.state = {"w": np.zeros(4, np.float32)}

    def host_state(self):
        return self.state

    def load_state(self, state):
        self.state = state


@pytest.mark.parametrize("every, skipped", [(None, True), (1, False)])
def test_auto_checkpoints_skip_periods_while_the_writer_is_busy(tmp_path, monkeypatch, every, skipped):
    from train.backends.checkpoint import Checkpointer

    write = Checkpointer._write
    # A disk slower than a period (periods take ~0 s here). Skipping needs one write to outlast the
    # next periods even on a loaded machine; waiting only needs each write to be slower than a period.
    delay = 1.0 if skipped else 0.2

    def slow_write(self, *args):
        time.sleep(delay)
        write(self, *args)

    monkeypatch.setattr(Checkpointer, "_write", slow_write)
    schedule = [np.array([[p, 10]], np.int32) for p in range(1, 7)]
    [(_, timing)] = train_loop(WithState(), [schedule], [tmp_path], epochs=True, progress=False,
                               checkpoint_every=every)
    saved = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert saved[-1] == 6  # the last period is always saved
    if skipped:  # periods take ~0 s: while period 1's write runs, periods 2.. are not saved
        assert timing["checkpoints_skipped"] >= 3 and len(saved) <= 3
    else:  # every period saved (the last 3 kept), each save waiting for the previous write
        assert timing["checkpoints_skipped"] == 0 and saved == [4, 5, 6]
