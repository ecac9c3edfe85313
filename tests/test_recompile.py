"""The recompilation guard: every training command counts the programs it builds (``compilations``
in summary.json), and a multi-epoch run of each experiment builds each of its programs once: none
after the first period, none again on resume. Tiny configs, in this process."""

import json
import shutil

import jax
import numpy as np
import optax
import pytest
from flax import nnx

import train
from jax_models.mlp import MLP
from conftest import on_gpu
from train.backends.jax_backend import JaxBackend
from train.engine.loop import train_loop

# Per experiment: tiny multi-epoch settings and the programs its training loop builds, each once.
# CIFAR and the RNN drop an epoch's partial last batch, so every epoch has the same shape; the CNN
# trains one compiled step per call on a CPU (data_step, and the evaluation in chunks), fused
# periods elsewhere.
CASES = {
    "mlp-toy": ({"steps": 90, "samples": 200, "framework": "jax"}, {"train_period": 1, "evaluate": 1}),
    "mlp-cifar": ({"data": "synthetic:192", "epochs": 3, "batch_size": 64, "limit_test": 64, "hidden": "32,16"},
                  {"train_period": 1, "evaluate": 1}),
    "cnn-cifar": ({"data": "synthetic:48", "epochs": 2, "batch_size": 16, "limit_test": 16, "eval_batch": 16},
                  {"train_period": 1, "evaluate": 1}),
    "rnn-palindrome": ({"epochs": 3, "data_size": 256, "batch_size": 32}, {"train_period": 1, "evaluate": 1}),
    "rnn-sweep": ({"epochs": 2, "data_size": 256, "batch_size": 32, "lengths": "5", "seeds": 2}, None),
}
# A CPU trains the CNN one compiled step per call, which costs this suite half a minute; the same
# unfused path is checked with the MLP (test_the_unfused_path_compiles_each_program_once) and the CNN
# itself on a GPU.
CPU_SKIP = {"cnn-cifar"}


def _summaries(out) -> list[dict]:
    """Every JAX run's summary.json under ``out`` (the sweep's seeds: one each)."""
    docs = [json.loads(p.read_text()) for p in sorted(out.rglob("summary.json"))]
    return [d for d in docs if d.get("framework") == "jax"]


@pytest.mark.parametrize("name", list(CASES))
def test_each_experiment_compiles_its_programs_once(tmp_path, name):
    if name in CPU_SKIP and not on_gpu():
        pytest.skip("the CNN's step-per-call CPU path is checked with the MLP")
    settings, expected = CASES[name]
    train.run(name, out=tmp_path, quick=True, **settings)
    (s, *more) = _summaries(tmp_path)
    c = s["compilations"]
    assert c["after_first_period"] == 0, c
    assert c["count"] == sum(c["programs"].values()) >= 2
    if expected is None:   # the sweep's seeds: one vmapped program of each
        assert set(c["programs"].values()) == {1}, c
    else:
        assert c["programs"] == expected
    assert c["setup"] >= 0 and c["cache_hits"] <= c["count"]
    for other in more:   # seeds trained together share one program and report it
        assert other["compilations"]["programs"] == c["programs"]


def test_no_recompile_on_resume_and_one_per_period_length(tmp_path):
    settings, expected = CASES["mlp-cifar"]
    train.run("mlp-cifar", out=tmp_path, quick=True, checkpoint_every=1, **settings)
    run_dir = next((tmp_path / "mlp-cifar").iterdir())
    # As if the run had stopped after epoch 2: its last checkpoint and summary gone.
    shutil.rmtree(run_dir / "checkpoints" / "3")
    (run_dir / "summary.json").unlink()
    s = train.run("mlp-cifar", out=tmp_path, quick=True, resume=True, checkpoint_every=1, **settings)
    assert s["resumed_from_period"] == 2
    assert s["compilations"]["programs"] == expected and s["compilations"]["after_first_period"] == 0
    # The toy MLP's evaluation every 30 steps with 100 steps: periods of 30, 30, 30 and 10 steps;
    # the short last period is a second shape of the same program, and the only compile after the first.
    s = train.run("mlp-toy", out=tmp_path / "toy", quick=True, steps=100, samples=200, framework="jax")["jax"]
    assert s["compilations"]["programs"] == {"train_period": 2, "evaluate": 1}
    assert s["compilations"]["after_first_period"] == 1
    assert json.loads((tmp_path / "toy" / "mlp-toy" / "moons-jax-s0" / "summary.json").read_text())[
        "compilations"] == s["compilations"]


def test_the_unfused_path_compiles_each_program_once(tmp_path):
    """One compiled step per call (how a CPU trains the CNN): the step, the evaluation chunk, the
    eager sum of the chunks' totals and two eager stacks (of the steps' metrics, of the chunks'
    predictions), each once, in period 1."""
    jax.clear_caches()  # an eager op another test ran at the same shape would not compile again here
    rng = np.random.default_rng(0)
    arrays = {"train_x": rng.standard_normal((96, 12), dtype=np.float32), "train_y": rng.integers(0, 3, 96),
              "test_x": rng.standard_normal((40, 12), dtype=np.float32), "test_y": rng.integers(0, 3, 40)}
    backend = JaxBackend(MLP(12, (8,), 3, rngs=nnx.Rngs(0)), optax.sgd(0.1), lambda x: x, arrays, seed=0,
                         eval_batch=16, eval_splits=("test",), fuse=False)
    periods = [rng.permutation(96)[:80].reshape(5, 16).astype(np.int32) for _ in range(3)]
    [(_, timing)] = train_loop(backend, [periods], [tmp_path], checkpoints=False, progress=False)
    assert timing["compilations"]["programs"] == {"data_step": 1, "data_eval_chunk": 1, "add": 1, "stack": 2}
    assert timing["compilations"]["after_first_period"] == 0
