"""The Python API, ``train.run(name, **settings)``: the command line's runs and checks, from Python."""

import json
import os
import signal

import jax
import jax.numpy as jnp
import pytest

import train
from train.experiments import registry
from train.engine.loop import Interrupted
from train.engine.results import read_jsonl
from train.errors import UsageError


def rows(path):
    return [{k: v for k, v in r.items() if k != "time_s"} for r in read_jsonl(path)]


def test_run_is_the_command_line(tmp_path, cli_fast):
    summary = train.run("rnn-palindrome", out=tmp_path / "api", quick=True, epochs=2, lr="0.002")
    assert cli_fast("rnn-palindrome", "--quick", "--epochs", "2", "--lr", "0.002", "--out", tmp_path / "cli",
                    "--no-progress").returncode == 0
    run = "rnn-palindrome/T5-vanilla-fp32-s0"
    assert rows(tmp_path / "api" / run / "metrics.jsonl") == rows(tmp_path / "cli" / run / "metrics.jsonl")
    assert json.loads((tmp_path / "api" / run / "config.json").read_text())["config"]["lr"] == 0.002
    assert summary["final"] == json.loads((tmp_path / "api" / run / "summary.json").read_text())["final"]
    assert summary["epochs"] == 2


def test_a_sweep_of_one_setting_tabulates(tmp_path):
    """The README's example: one setting varied, one summary each."""
    table = {lr: train.run("mlp-toy", out=tmp_path, dataset="blobs", framework="jax", steps=60, lr=lr,
                           seed=1)["jax"]["final"]["test_accuracy"] for lr in (0.001, 0.1)}
    assert set(table) == {0.001, 0.1} and all(0 <= a <= 1 for a in table.values())
    assert table[0.1] > table[0.001]  # 60 steps at lr 0.001 barely move the weights


@pytest.mark.parametrize("name, given, message", [
    ("mlp-cifar", {"learning_rate": 0.1}, "mlp-cifar has no setting 'learning_rate'; its settings: variant, framework, data"),
    ("cnn-cifar", {"hidden": "10"}, "cnn-cifar has no setting 'hidden'"),   # fixed by the experiment
    ("mlp-toy", {"steps": 0}, "--steps must be positive, got 0"),           # the same check as the flag's
    ("mlp-toy", {"steps": "many"}, "mlp-toy: --steps: invalid literal for int()"),
    ("mlp-toy", {"steps": 1.5}, "mlp-toy: --steps must be int, got 1.5"),
    ("rnn-palindrome", {"eval_train": "maybe"}, "--eval-train must be true or false, got 'maybe'"),
    ("rnn-sweep", {"lengths": "5,x"}, "--lengths: expected comma-separated integers, got '5,x'"),
    ("gan", {}, "unknown experiment 'gan'; choose from mlp-toy, mlp-cifar, cnn-cifar, rnn-palindrome, rnn-sweep"),
])
def test_bad_settings_are_usage_errors(tmp_path, name, given, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        train.run(name, out=tmp_path, **given)
    assert not any(tmp_path.iterdir()), "nothing may be written"


def test_settings_convert_like_flags():
    e = registry.get("mlp-cifar")
    cfg = registry.make_config(e, {"lr": 1, "eval_train": "yes", "epochs": "3", "data_dir": None})
    assert (cfg.lr, cfg.eval_train, cfg.epochs, cfg.data_dir) == (1.0, True, 3, None)
    assert isinstance(cfg.lr, float) and cfg.model == "mlp"


def test_every_setting_has_help_text():
    for e in registry.EXPERIMENTS.values():
        for f in registry.settings(e):
            assert len(f.metadata.get("help", "")) > 10, (e.name, f.name)


def ctrl_c_after_first_period(monkeypatch) -> None:
    """Every JAX training call is followed by a Ctrl-C: the loop saves a checkpoint after its first
    period and stops (``monkeypatch.undo()`` lets the resumed run go on)."""
    from train.backends.jax_backend import JaxBackend
    real = JaxBackend.train

    def train_then_ctrl_c(self, idx):
        out = real(self, idx)
        os.kill(os.getpid(), signal.SIGINT)
        return out

    monkeypatch.setattr(JaxBackend, "train", train_then_ctrl_c)


def test_an_interrupted_run_names_the_call_that_resumes_it(tmp_path, monkeypatch):
    ctrl_c_after_first_period(monkeypatch)
    with pytest.raises(Interrupted) as stopped:
        train.run("rnn-palindrome", out=tmp_path, quick=True, epochs=2, lr="0.002")
    monkeypatch.undo()
    hint = str(stopped.value).split("; resume with: ")[-1]
    assert hint == (f"train.run('rnn-palindrome', out={str(tmp_path)!r}, quick=True, epochs=2, lr='0.002', "
                    f"resume=True)")
    summary = eval(hint, {"train": train})  # noqa: S307 - the hint is meant to be pasted and run
    assert summary["resumed_from_period"] == 1 and summary["epochs"] == 2


@pytest.mark.slow
def test_a_float64_run_leaves_the_next_run_as_it_would_be_alone(tmp_path):
    """A study that trains the toy MLP in float64, then the CIFAR MLP: the latter's numbers are those
    of the same run before it, to the bit, and the process is back in 32-bit mode."""
    tiny = {"data": "synthetic:256", "hidden": "32", "epochs": 1, "batch_size": 64, "eval_train": False}
    train.run("mlp-cifar", out=tmp_path / "alone", **tiny)
    train.run("mlp-toy", out=tmp_path / "toy", framework="jax", steps=60, dtype="float64")
    train.run("mlp-cifar", out=tmp_path / "after", **tiny)
    assert not jax.config.jax_enable_x64 and jnp.asarray(1.0).dtype == jnp.float32
    run = "mlp-cifar/plain-fp32-s0"
    assert rows(tmp_path / "after" / run / "metrics.jsonl") == rows(tmp_path / "alone" / run / "metrics.jsonl")


def test_a_torch_toy_run_leaves_the_process_thread_count_as_it_was(tmp_path):
    """The toy's PyTorch backend computes on one thread; the process keeps its own count, which sets the
    order of every parallel sum in the next run (a resumed run must see the count its first attempt saw)."""
    from train.backends.torch_backend import import_torch
    torch = import_torch()
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        train.run("mlp-toy", out=tmp_path, framework="torch", steps=30, progress=False)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
