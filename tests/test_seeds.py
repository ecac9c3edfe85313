"""``--seeds K`` (train/experiments/seeds.py): seeds seed..seed+K-1, each the run folder ``--seed s`` writes.

JAX trains the K seeds side by side in one vmapped program (train/backends/jax_multiseed.py); PyTorch and
NumPy train them in turn. The bound is the sweep's (tests/test_multiseed.py): on a CPU the vmapped programs
match the single ones but for the order of the metrics' sums (<= the eval batch's entries); on a GPU
batched GEMMs may order every sum differently in every step (run_bound over the widest sum, margin 2).
Where vmap reorders a training sum and AdamW amplifies it (a bias before a batch norm, whose gradient is
zero but for rounding) or a convolution becomes a grouped one, the bound is that of test_cross_framework.
"""

import json
from pathlib import Path

import jax
import numpy as np
import pytest

import train
from conftest import on_gpu
from tolerances import U32, adam_drift_bound, run_bound, sum_rel_error
from train.backends import jax_multiseed
from train.engine.results import read_jsonl
from train.errors import UsageError

EVAL = 256  # the largest eval batch below: a CPU run's metric sums have at most this many entries


def tol(n: int, steps: int) -> float:
    """The sweep's bound (test_multiseed.TOL) for runs of ``steps`` steps whose widest sum has ``n`` terms."""
    return run_bound(U32, n=n, steps=steps, margin=2) if on_gpu() else sum_rel_error(EVAL, U32)


def rows(run_dir: Path, split: str | None = None) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "time_s"} for r in read_jsonl(run_dir / "metrics.jsonl")
            if split is None or r["split"] == split]


def max_gap(a: Path, b: Path, split: str | None = None) -> float:
    """Largest |loss or accuracy difference| over the evaluations of two runs, which made the same ones."""
    ra, rb = rows(a, split), rows(b, split)
    assert [(r.get("step"), r["split"]) for r in ra] == [(r.get("step"), r["split"]) for r in rb] and ra
    return max(abs(x[m] - y[m]) for x, y in zip(ra, rb) for m in ("loss", "accuracy"))


def digest(run_dir: Path) -> tuple:
    c = json.loads((run_dir / "config.json").read_text())
    return c["config_digest"], c["config"]


@pytest.fixture
def side_by_side(monkeypatch):
    """The seed counts the vmapped backend trained (one entry per MultiSeedJaxBackend built)."""
    made, init = [], jax_multiseed.MultiSeedJaxBackend.__init__

    def spy(self, *a, **kw):
        init(self, *a, **kw)
        made.append(self.runs)
    monkeypatch.setattr(jax_multiseed.MultiSeedJaxBackend, "__init__", spy)
    return made


@pytest.mark.parametrize("seeds", [0, -1, True, "2"])
def test_bad_seeds_is_a_usage_error_and_writes_nothing(tmp_path, cli_fast, seeds):
    with pytest.raises(UsageError, match="--seeds must be a positive integer"):
        train.run("mlp-toy", out=tmp_path, seeds=seeds)
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        r = cli_fast("mlp-toy", "--seeds", seeds, "--out", tmp_path)
        assert r.returncode == 2 and r.stderr == f"error: --seeds must be a positive integer, got {seeds}\n"
    r = cli_fast("cnn-cifar", "--seed", 2**32 - 1, "--seeds", 2, "--out", tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "the last seed 4294967296" in r.stderr
    assert not any(tmp_path.iterdir())


def test_one_seed_returns_what_the_plain_run_returns(tmp_path):
    kw = {"framework": "jax", "steps": 30, "samples": 100}
    one, plain = train.run("mlp-toy", out=tmp_path / "a", seeds=1, **kw), train.run("mlp-toy", out=tmp_path / "b", **kw)
    assert list(one) == list(plain) == ["jax"] and one["jax"]["final"] == plain["jax"]["final"]


def test_toy_seeds_side_by_side_equal_separate_runs_and_are_reused(tmp_path, side_by_side):
    kw = {"framework": "jax", "steps": 90, "samples": 200, "devices": 1}
    got = train.run("mlp-toy", out=tmp_path / "k", seeds=3, seed=4, **kw)
    assert side_by_side == [3] and list(got) == ["jax"] and [s["seed"] for s in got["jax"]] == [4, 5, 6]
    assert [s["trained_together"] for s in got["jax"]] == [3, 3, 3]
    for s in (4, 5, 6):
        alone = train.run("mlp-toy", out=tmp_path / "a", seed=s, **kw)["jax"]
        a, b = (tmp_path / r / "mlp-toy" / f"moons-jax-s{s}" for r in ("k", "a"))
        assert digest(a) == digest(b)
        assert max_gap(a, b) <= tol(30, 90)
        assert abs(got["jax"][s - 4]["final"]["test_loss"] - alone["final"]["test_loss"]) <= tol(30, 90)
    # --resume: finished seeds are read back, not trained again.
    before = [(tmp_path / "k" / "mlp-toy" / f"moons-jax-s{s}" / "summary.json").read_text() for s in (4, 5, 6)]
    again = train.run("mlp-toy", out=tmp_path / "k", seeds=3, seed=4, resume=True, **kw)
    assert side_by_side == [3] and again == got
    assert before == [(tmp_path / "k" / "mlp-toy" / f"moons-jax-s{s}" / "summary.json").read_text() for s in (4, 5, 6)]


def test_torch_and_numpy_seeds_train_in_turn_as_separate_runs(tmp_path, monkeypatch, side_by_side):
    pytest.importorskip("torch")
    from train.experiments import seeds as seeds_mod

    grouped = []
    real = seeds_mod.compare_runs
    monkeypatch.setattr(seeds_mod, "compare_runs", lambda *a, **kw: grouped.append(kw) or real(*a, **kw))
    kw = {"framework": "numpy,torch", "steps": 60, "samples": 200}
    got = train.run("mlp-toy", out=tmp_path / "k", seeds=2, **kw)
    assert side_by_side == [] and sorted(got) == ["compare", "numpy", "torch"]
    assert grouped == [{"by": "framework"}] and len(got["compare"]["runs"]) == 4
    assert (tmp_path / "k" / "mlp-toy" / "moons-compare-s0-seeds2" / "compare.json").is_file()
    for s in (0, 1):
        train.run("mlp-toy", out=tmp_path / "a", seed=s, **kw)
        for fw in ("numpy", "torch"):
            a, b = (tmp_path / r / "mlp-toy" / f"moons-{fw}-s{s}" for r in ("k", "a"))
            assert digest(a) == digest(b) and rows(a) == rows(b)  # the same program, in turn: bit for bit
            assert got[fw][s]["final"] == json.loads((b / "summary.json").read_text())["final"]


CIFAR = {"data": "synthetic:256", "hidden": "64,32", "batch_size": 32, "epochs": 2, "limit_train": 192,
         "eval_batch": EVAL, "devices": 1}


@pytest.mark.parametrize("variant", ["plain", "improved"])
def test_cifar_mlp_seeds_side_by_side_equal_separate_runs(tmp_path, side_by_side, variant):
    """Each seed's own subset of the data (--limit-train) and channel statistics, in one program.

    The improved MLP's eval-mode (test) metrics are left to test_improved_mlp_biases_drift_within_adams_bound:
    the biases before its batch norms differ by AdamW-amplified rounding, which train mode cancels."""
    got = train.run("mlp-cifar", out=tmp_path / "k", seeds=2, seed=3, variant=variant, **CIFAR)
    assert side_by_side == [2] and isinstance(got, list) and [s["trained_together"] for s in got] == [2, 2]
    steps = 2 * 192 // 32
    for k, s in enumerate((3, 4)):
        alone = train.run("mlp-cifar", out=tmp_path / "a", seed=s, variant=variant, **CIFAR)
        a, b = (tmp_path / r / "mlp-cifar" / f"{variant}-fp32-s{s}" for r in ("k", "a"))
        ca, cb = (json.loads((d / "config.json").read_text()) for d in (a, b))
        assert digest(a) == digest(b) and ca["channel_mean"] == cb["channel_mean"] and ca["n_train"] == 192
        assert max_gap(a, b, None if variant == "plain" else "train") <= tol(3072, steps)
        if variant == "plain":
            assert abs(got[k]["final"]["test_loss"] - alone["final"]["test_loss"]) <= tol(3072, steps)
    m0, m1 = (json.loads((tmp_path / "k" / "mlp-cifar" / f"{variant}-fp32-s{s}" / "config.json").read_text())
              ["channel_mean"] for s in (3, 4))
    assert m0 != m1  # the seeds' subsets differ, and so do their statistics


def test_improved_mlp_biases_drift_within_adams_bound():
    """Vmapped and alone, the improved MLP (batch norm, dropout) trains to the same step metrics; the biases
    before its batch norms, whose gradient is rounding noise, part by at most what AdamW can move each."""
    from train.engine.schedule import epoch_batches
    from train.experiments import cifar

    cfgs = [cifar.mlp_config(**{**CIFAR, "variant": "improved", "seed": s}) for s in (0, 1)]
    data = [cifar._prepare(c, Path("unused"), k)[1] for k, c in enumerate(cfgs)]
    models = [cifar.build_model(c, axis_name=None) for c in cfgs]
    multi = jax_multiseed.MultiSeedJaxBackend(
        models, cifar.make_optimizer(cfgs[0]), lambda x: x, [d.arrays for d in data], seeds=[0, 1],
        eval_batch=EVAL, normalize=[(d.mean, d.std) for d in data], precision=cfgs[0].resolved_precision)
    alone = [cifar.make_backend(c, "jax", d) for c, d in zip(cfgs, data)]
    n, steps, worst = 192, 0, 0.0
    for epoch in range(2):
        idx = np.stack([epoch_batches(n, 32, epoch, c.seed) for c in cfgs])
        together, steps = multi.train(idx), steps + n // 32
        for r, b in enumerate(alone):
            worst = max(worst, float(np.max(np.abs(together[r]["loss"] - b.train(idx[r])["loss"]))))
    assert worst <= tol(3072, steps)
    bound = 2 * adam_drift_bound(1e-3, steps, weight_decay=0.01)
    for r, b in enumerate(alone):
        got, ref = multi.host_state()[r].params["linears"], b.host_state().params["linears"]
        gaps = [float(np.max(np.abs(got[i]["bias"].get_value() - ref[i]["bias"].get_value()))) for i in range(2)]
        print(f"seed {r}: pre-BN bias gaps {gaps}, bound {bound:.3g}; step loss gap {worst:.3g}")
        assert max(gaps) <= bound, (gaps, bound)


def test_rnn_seeds_side_by_side_equal_separate_runs(tmp_path, side_by_side):
    kw = {"input_length": 5, "data_size": 1000, "batch_size": 32, "epochs": 2, "eval_batch": EVAL, "devices": 1}
    got = train.run("rnn-palindrome", out=tmp_path / "k", seeds=2, **kw)
    assert side_by_side == [2] and [s["seed"] for s in got] == [0, 1] and got[0]["trained_together"] == 2
    for s in (0, 1):
        train.run("rnn-palindrome", out=tmp_path / "a", seed=s, **kw)
        a, b = (tmp_path / r / "rnn-palindrome" / f"T5-vanilla-fp32-s{s}" for r in ("k", "a"))
        assert digest(a) == digest(b)
        assert max_gap(a, b) <= tol(32 * 5, 2 * 25)


@pytest.mark.slow
def test_cnn_seeds_side_by_side_within_the_rounding_floor():
    """The CNN's seeds in one program (its convolutions grouped over the seeds, one vmapped step per call
    on a CPU) against each alone, with the experiment's AdamW and per-seed channel statistics. The
    convolutions sum in another order, so the bound is a floor measured here (as test_cross_framework's
    CNN test): each seed alone again from weights nudged one ulp, which differ as one rounding would."""
    from flax import nnx

    from data.cifar10 import channel_stats
    from jax_models.cnn import BLOCKS, CNN
    from train.backends.jax_backend import JaxBackend, fuses, normalizer
    from train.engine.schedule import epoch_batches
    from train.experiments import cifar
    from tolerances import FLOOR_MULTIPLE, nudge

    narrow = tuple(tuple(c // 8 for c in block) for block in BLOCKS)
    model = lambda s: CNN(blocks=narrow, rngs=nnx.Rngs(s))  # noqa: E731
    rng = np.random.default_rng(0)
    arrays = [{"train_x": rng.integers(0, 256, (32, 16, 16, 3), dtype=np.uint8),
               "train_y": rng.integers(0, 10, 32).astype(np.int32),
               "test_x": rng.integers(0, 256, (8, 16, 16, 3), dtype=np.uint8),
               "test_y": rng.integers(0, 10, 8).astype(np.int32)} for _ in (0, 1)]
    stats = [channel_stats(a["train_x"]) for a in arrays]
    tx = cifar.make_optimizer(cifar.cnn_config())
    fuse = fuses(model(0), None)
    multi = jax_multiseed.MultiSeedJaxBackend([model(s) for s in (0, 1)], tx, lambda x: x, arrays, seeds=[0, 1],
                                              normalize=stats, fuse=fuse, eval_batch=8)
    alone = [JaxBackend(model(s), tx, normalizer(*stats[s]), arrays[s], seed=s, fuse=fuse, eval_batch=8,
                        eval_splits=("test",)) for s in (0, 1)]
    nudged = [JaxBackend(model(s), tx, normalizer(*stats[s]), arrays[s], seed=s, fuse=fuse, eval_batch=8,
                         eval_splits=("test",)) for s in (0, 1)]
    for b in nudged:
        b.load_state(jax.tree.map(lambda w: nudge(w, rng) if w.dtype == np.float32 else w, b.host_state()))
    gap = floor = 0.0
    for epoch in range(2):
        idx = np.stack([epoch_batches(32, 8, epoch, s) for s in (0, 1)])
        together = multi.train(idx)
        for s in (0, 1):
            ref, other = alone[s].train(idx[s])["loss"], nudged[s].train(idx[s])["loss"]
            gap = max(gap, float(np.max(np.abs(together[s]["loss"] - ref))))
            floor = max(floor, float(np.max(np.abs(other - ref))))
    evals = multi.evaluate()
    for s in (0, 1):
        ref, other = alone[s].evaluate()["test"]["loss"], nudged[s].evaluate()["test"]["loss"]
        gap, floor = max(gap, abs(evals[s]["test"]["loss"] - ref)), max(floor, abs(other - ref))
    print(f"CNN seeds: gap {gap:.3g}, floor {floor:.3g}")
    assert 0 < floor and gap <= FLOOR_MULTIPLE * floor


def test_an_interrupted_seed_resumes_alone_from_the_shared_programs_checkpoint(tmp_path, side_by_side, capsys):
    """--resume: the finished seed is read back; the other continues alone from the checkpoint the vmapped
    program wrote for it, and ends where the uninterrupted run did."""
    import shutil

    kw = {"framework": "jax", "steps": 90, "samples": 200, "devices": 1, "checkpoint_every": 1}
    got = train.run("mlp-toy", out=tmp_path, seeds=2, **kw)
    run = tmp_path / "mlp-toy" / "moons-jax-s1"
    (run / "summary.json").unlink()
    shutil.rmtree(run / "checkpoints" / "3")  # as if killed in the last of its 3 periods
    capsys.readouterr()
    again = train.run("mlp-toy", out=tmp_path, seeds=2, resume=True, **kw)
    assert "resuming from checkpoint 2 of 3" in capsys.readouterr().out
    assert side_by_side == [2] and again["jax"][0] == got["jax"][0]
    assert again["jax"][1]["resumed_from_period"] == 2
    assert abs(again["jax"][1]["final"]["test_loss"] - got["jax"][1]["final"]["test_loss"]) <= tol(30, 90)


@pytest.mark.full
def test_several_devices_split_the_seeds_in_one_program(tmp_path):
    import os
    import subprocess
    import sys

    from conftest import ROOT, xla_flags

    env = {**os.environ, "XLA_FLAGS": xla_flags("--xla_force_host_platform_device_count=2")}
    args = ["mlp-toy", "--framework", "jax", "--seeds", "2", "--steps", "30", "--samples", "100", "--no-progress"]
    for devices in ("2", "1"):
        r = subprocess.run([sys.executable, "-m", "train", *args, "--devices", devices, "--out",
                            str(tmp_path / devices)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        assert "one after the other" not in r.stderr
    # One seed per device against two seeds on one: every matmul is batched over 1 seed instead of 2, and
    # XLA may pick other kernels for it (it does under an AVX2 cap on an AVX-512 CPU), so each of the 30
    # steps may round its widest sum, the batch of 30 or the 20 hidden units, otherwise (run_bound).
    bound = run_bound(U32, n=30, steps=30, margin=2)
    for s in (0, 1):
        spread, one = (json.loads((tmp_path / d / "mlp-toy" / f"moons-jax-s{s}" / "summary.json").read_text())
                       for d in ("2", "1"))
        # Each seed on a device of its own, both in one program.
        assert (spread["devices"], spread["seed_devices"], spread["trained_together"]) == (1, 2, 2)
        assert spread["compilations"]["programs"]["train_period"] == 1
        for k, v in one["final"].items():
            assert abs(spread["final"][k] - v) <= bound, (s, k, spread["final"][k], v)
