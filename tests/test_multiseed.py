"""Seeds side by side in one compiled program (train/backends/jax_multiseed.py, ``rnn-sweep --seeds K``).

K seeds trained by one ``jax.vmap``-ed program must give what K separate runs give.

Why the CPU tolerance holds (measured while writing these tests): under vmap the forward pass,
every matmul, every parameter-gradient contraction and the optimizer (with the RNN's
PyTorch-style clipping; optax's clip_by_global_norm was not: see
test_clipping_is_bit_identical_under_vmap) are bit-identical to the unbatched program on
XLA:CPU, provided no gradient is a sum whose order vmap changes: the cell bias is added
inside the scan step for that reason (hoisted into the input term, its gradient was one
sum over (time, batch) that XLA:CPU ordered differently under vmap, and long runs drifted
apart). Metric values themselves (a mean over the batch, an eval sum) may still differ by
1 ulp. On a GPU, vmap turns every matmul into a batched GEMM, which cuBLAS may run with
other kernels and accumulation orders than the single GEMM: seeds then agree to rounding
that training carries along (see TOL below for the bound), and the bit-identity tests
are CPU-only.
"""

import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from conftest import ROOT, on_gpu
from tolerances import U32, run_bound, sum_rel_error
from train.engine.results import TIMING_FIELDS, read_jsonl

cpu_only = pytest.mark.skipif(on_gpu(), reason="batched GEMMs on a GPU may round unlike single ones (see above)")
T, DATA, BATCH, EPOCHS, SEEDS = 5, 1000, 32, 4, 2   # 800 training sequences: 25 steps an epoch
ARGS = ["--data-size", str(DATA), "--batch-size", str(BATCH), "--epochs", str(EPOCHS), "--eval-batch", "256",
        "--devices", "1", "--no-progress", "--checkpoint-every", "1"]
SWEEP = ["rnn-sweep", "--lengths", str(T), "--seeds", str(SEEDS), *ARGS]
RUNS = [f"T{T}-vanilla-fp32-s{s}" for s in range(SEEDS)]
TIMING = set(TIMING_FIELDS) | {"attempt"}  # what differs between two runs of the same settings
# CPU: the programs are bit-identical but for the metrics' means, which may sum their <= 256 entries (the
# eval batch) in another order: a relative error <= 256 u32 (sum_rel_error). GPU: batched GEMMs may order
# every sum differently, in every step: each of the runs' EPOCHS x 25 steps adds the rounding of its widest
# sum (a gradient's 32 examples x T steps) in each of the two runs (run_bound, margin 2).
TOL = run_bound(U32, n=BATCH * T, steps=EPOCHS * 25, margin=2) if on_gpu() else sum_rel_error(256, U32)


def _cfg(**kw):
    from train.experiments.rnn import RNNConfig

    return RNNConfig(input_length=T, data_size=DATA, batch_size=BATCH, epochs=EPOCHS, eval_batch=256, devices=1, **kw)


def _rows(path):
    return [{k: v for k, v in r.items() if k != "time_s"} for r in read_jsonl(path)]


def _max_metric_diff(a_dir: Path, b_dir: Path) -> float:
    a, b = _rows(a_dir / "metrics.jsonl"), _rows(b_dir / "metrics.jsonl")
    key = lambda r: (r["step"], r["epoch"], r["split"])
    assert [key(r) for r in a] == [key(r) for r in b] and len(a) == 2 * EPOCHS  # train + test each epoch
    return max(abs(x[m] - y[m]) for x, y in zip(a, b) for m in ("loss", "accuracy"))


def _max_grad_norm_diff(a_dir: Path, b_dir: Path) -> float:
    a, b = (json.loads((d / "grad_norms.json").read_text()) for d in (a_dir, b_dir))
    assert a["t"] == b["t"] == list(range(1, T + 1))
    return max(abs(x - y) for w in ("init", "trained") for x, y in zip(a[w], b[w]))


def _numbers_close(a, b, path=""):
    """Equal structure; equal strings/ints; floats within TOL (relative for values above 1)."""
    if isinstance(a, dict):
        assert sorted(a) == sorted(b), path
        for k in a:
            _numbers_close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, float) or isinstance(b, float):
        assert abs(a - b) <= TOL * max(1.0, abs(b)), (path, a, b)
    else:
        assert a == b, (path, a, b)


def _strip(summary):
    return {k: v for k, v in summary.items() if k not in TIMING}


def _run(args, out, code=None):
    """``python -m train ARGS --out OUT`` (or ``python -c CODE ARGS``) in a subprocess. Subprocesses, not
    in-process calls: the CLI's persistent compilation cache then compiles each program once for the file."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    head = ["-c", code] if code else ["-m", "train"]
    return subprocess.run([sys.executable, *head, *map(str, args), "--out", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def sweep_and_separate(tmp_path_factory):
    """One `rnn-sweep --seeds 2` and the same two seeds, each run alone with `rnn-palindrome`.

    Built once per test session, whichever process needs it first: under pytest-xdist the workers'
    temporary folders share a parent that is this session's, and a lock makes the others wait for
    the first build (a module-scoped fixture would be built again by every worker, and again when a
    worker runs another module's test in between). The tests only read it."""
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "multiseed-sweep"
    with open(f"{root}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / "built").exists():
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir()
            _build_sweep_and_separate(root)
            (root / "built").touch()
    return root / "sweep", root / "alone"


def _build_sweep_and_separate(root):
    r = _run(SWEEP, root / "sweep")
    assert r.returncode == 0, r.stderr
    assert "one after the other" not in r.stderr  # the vmapped path ran, not the fallback
    for s in range(SEEDS):
        r = _run(["rnn-palindrome", "--input-length", T, "--seed", s, *ARGS], root / "alone")
        assert r.returncode == 0, r.stderr
    return root / "sweep", root / "alone"


def _seed_data(seeds):
    from flax import nnx

    from data.palindrome import make_palindrome_data
    from jax_models.rnn import RNNClassifier
    from train.experiments.rnn import make_optimizer

    arrays = []
    for s in seeds:
        ds = make_palindrome_data(T, DATA, 0.8, seed=s)
        arrays.append({"train_x": ds.train_x, "train_y": ds.train_y, "test_x": ds.test_x, "test_y": ds.test_y})
    n = len(arrays[0]["train_y"])
    tx = make_optimizer(_cfg(), n // BATCH)
    model = lambda s: RNNClassifier(input_dim=10, hidden=128, num_classes=10, rngs=nnx.Rngs(s))
    return arrays, n, tx, model


def test_vmapped_backend_matches_each_seed_alone():
    """Function level: MultiSeedJaxBackend vs the single-run pure functions (StepFns), seed by seed."""
    from train.engine.schedule import epoch_batches
    from train.backends.jax_multiseed import MultiSeedJaxBackend
    from train.backends.jax_trainer import StepFns, create_state, eval_plan

    seeds = [3, 7]
    arrays, n, tx, model = _seed_data(seeds)
    multi = MultiSeedJaxBackend([model(s) for s in seeds], tx, lambda x: x, arrays, seeds=seeds, eval_batch=256,
                                eval_splits=("train", "test"))
    assert multi.runs == 2 and multi.devices == 1 and multi.param_count == 138 * 128 + 128 + 128 * 10 + 10
    # What JaxBackend builds and compiles for one seed alone (one compile serves both seeds: same shapes).
    alone = [create_state(model(s), tx, s) for s in seeds]
    fns = StepFns(alone[0][0], tx, lambda x: x)
    train_one, eval_one = jax.jit(fns.train_period), jax.jit(fns.evaluate)
    plans = {sp: tuple(p[0] for p in eval_plan(len(arrays[0][f"{sp}_y"]), 256)) for sp in ("train", "test")}
    states = [st for _, st in alone]
    # The same initial states (parameters, optimizer state, step, dropout key), bit for bit.
    initial = multi.host_state()
    for got, ref in zip(initial, states):
        ref = jax.device_get(ref)
        assert jax.tree.structure(got) == jax.tree.structure(ref)
        for x, y in zip(jax.tree.leaves(got), jax.tree.leaves(ref)):
            assert x.dtype == y.dtype
            np.testing.assert_array_equal(x, y)
    worst = {"loss": 0.0, "accuracy": 0.0, "grad_norm": 0.0, "eval": 0.0, "params": 0.0}
    for epoch in range(2):
        idx = np.stack([epoch_batches(n, BATCH, epoch, s) for s in seeds])
        steps, evals = multi.train(idx), multi.evaluate()
        if epoch == 0:
            first = steps
        for r in range(len(seeds)):
            states[r], ref_steps = train_one(states[r], arrays[r], idx[r])
            ref_steps = jax.device_get(ref_steps)
            assert sorted(steps[r]) == sorted(ref_steps) and steps[r]["loss"].shape == (n // BATCH,)
            for k in ref_steps:
                # grad_norm is ~1-10 in size: compare it relatively.
                scale = np.maximum(1.0, np.abs(ref_steps[k])) if k == "grad_norm" else 1.0
                worst[k] = max(worst[k], float(np.max(np.abs(steps[r][k] - ref_steps[k]) / scale)))
            assert list(evals[r]) == ["train", "test"]
            for sp, (sums, pred) in jax.device_get(eval_one(states[r], arrays[r], plans)).items():
                loss_sum, correct, count = (float(v) for v in sums)
                assert evals[r][sp]["count"] == count == len(arrays[r][f"{sp}_y"])
                worst["eval"] = max(worst["eval"], abs(evals[r][sp]["loss"] - loss_sum / count),
                                    abs(evals[r][sp]["accuracy"] - correct / count))
                np.testing.assert_array_equal(multi.last_predictions[r][sp], np.asarray(pred).reshape(-1)[:int(count)])
    for got, ref in zip(multi.host_state(), states):
        worst["params"] = max(worst["params"], max(float(np.max(np.abs(x - y))) for x, y in
                                                   zip(jax.tree.leaves(got.params), jax.tree.leaves(ref.params))))
    print("max |vmapped - alone|:", worst)
    assert all(v <= TOL for v in worst.values()), worst
    assert worst["accuracy"] == 0.0
    # load_state takes what host_state gives (a resume): back at the initial states, the first epoch again.
    multi.load_state(initial)
    again = multi.train(np.stack([epoch_batches(n, BATCH, 0, s) for s in seeds]))
    assert all(np.array_equal(x["loss"], y["loss"]) for x, y in zip(again, first))


def test_clipping_is_bit_identical_under_vmap():
    """rnn.make_optimizer under vmap updates each seed exactly as alone, also when clipping acts."""
    import optax

    from train.experiments.rnn import make_optimizer

    tx = make_optimizer(_cfg(), 25)
    rng = np.random.default_rng(0)
    # Three seeds' gradients: global norms ~0.1 (no clipping), ~40 and ~400 (clipped to 10).
    scale = np.array([1e-3, 0.3, 3.0], np.float32)
    grads = {"w": rng.standard_normal((3, 138, 128)).astype(np.float32) * scale[:, None, None],
             "b": rng.standard_normal((3, 128)).astype(np.float32) * scale[:, None]}
    params = jax.tree.map(lambda g: np.ones_like(g[0]), grads)

    def step(g):
        updates, _ = tx.update(g, tx.init(params), params)
        return updates, optax.tree.norm(g)

    many = jax.jit(jax.vmap(step))(grads)
    for s in range(3):
        one = jax.jit(step)(jax.tree.map(lambda x: x[s], grads))
        for x, y in zip(jax.tree.leaves(one), jax.tree.leaves(many)):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y)[s])
    assert float(many[1][0]) < 10 < float(many[1][1]) < float(many[1][2])


@cpu_only
@pytest.mark.parametrize("cell", ["vanilla", "lstm"])
def test_rnn_train_step_is_bit_identical_under_vmap(cell):
    from flax import nnx

    from jax_models.rnn import RNNClassifier
    from train.experiments.rnn import make_optimizer
    from train.backends.jax_multiseed import stack_trees
    from train.backends.jax_trainer import StepFns, create_state

    rng = np.random.default_rng(0)
    x = rng.integers(0, 10, (3, BATCH, T)).astype(np.uint8)
    y = rng.integers(0, 10, (3, BATCH)).astype(np.int32)
    tx = make_optimizer(_cfg(), 25)
    made = [create_state(RNNClassifier(hidden=128, cell=cell, rngs=nnx.Rngs(s)), tx, s) for s in range(3)]
    fns = StepFns(made[0][0], tx, lambda v: v)
    many, _ = jax.jit(jax.vmap(fns.train_step))(stack_trees([jax.device_get(st) for _, st in made]), x, y)
    for s, (_, st) in enumerate(made):
        one, _ = jax.jit(fns.train_step)(st, x[s], y[s])
        for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(many)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b)[s])


# The tests that share sweep_and_separate, kept on one worker where make test's --dist loadgroup can.
SHARES_THE_SWEEP = pytest.mark.xdist_group("sweep_and_separate")


@pytest.mark.slow
@SHARES_THE_SWEEP
def test_sweep_seeds_equal_separate_runs(sweep_and_separate):
    sweep, alone = sweep_and_separate
    worst_metric = worst_grad = 0.0
    for run in RUNS:
        a, b = sweep / "rnn-palindrome" / run, alone / "rnn-palindrome" / run
        assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir()) == sorted(
            [".lock", "config.json", "metrics.jsonl", "summary.json", "grad_norms.json", "curves.png",
             "grad_norms.png", "checkpoints"])
        assert sorted(p.name for p in (a / "checkpoints").iterdir()) == sorted(
            p.name for p in (b / "checkpoints").iterdir()) == [str(e) for e in range(2, EPOCHS + 1)]
        ca, cb = (json.loads((d / "config.json").read_text()) for d in (a, b))
        assert ca["config"] == cb["config"] and ca["n_train"] == cb["n_train"] == 800
        worst_metric = max(worst_metric, _max_metric_diff(a, b))
        worst_grad = max(worst_grad, _max_grad_norm_diff(a, b))
        sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
        assert sorted(sa) == sorted(sb)
        _numbers_close(_strip(sa), _strip(sb))
        assert sa["devices"] == 1 and sa["steps"] == EPOCHS * 25 and sa["resumed_from_period"] is None
    print(f"max |sweep - alone|: metrics {worst_metric:.2e}, grad norms {worst_grad:.2e}")
    assert worst_metric <= TOL and worst_grad <= TOL
    doc = json.loads((sweep / "rnn-sweep" / "sweep.json").read_text())
    assert [r["seed"] for r in doc["runs"]] == list(range(SEEDS)) and doc["summary"]["vanilla"][0]["n"] == SEEDS


@SHARES_THE_SWEEP
def test_each_seed_folder_resumes_alone_and_finished_runs_are_reused(sweep_and_separate, tmp_path):
    """A seed's folder from the vmapped sweep is a single run's: `rnn-palindrome --resume` continues it."""
    from train.experiments.rnn_sweep import sweep

    sweep_dir, alone = sweep_and_separate
    run = RUNS[1]
    work = tmp_path / "rnn-palindrome"
    shutil.copytree(sweep_dir / "rnn-palindrome" / run, work / run)
    shutil.rmtree(work / run / "checkpoints" / str(EPOCHS))  # as if killed after epoch EPOCHS - 1
    (work / run / "summary.json").unlink()
    r = _run(["rnn-palindrome", "--input-length", T, "--seed", 1, *ARGS, "--resume"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"resuming from checkpoint {EPOCHS - 1} of {EPOCHS}" in r.stdout
    assert _max_metric_diff(work / run, alone / "rnn-palindrome" / run) <= TOL
    # sweep(reuse=True) reads finished runs back instead of training them again.
    for r in RUNS:
        shutil.copytree(sweep_dir / "rnn-palindrome" / r, tmp_path / "reuse" / "rnn-palindrome" / r)
    before = {r: (tmp_path / "reuse" / "rnn-palindrome" / r / "summary.json").read_text() for r in RUNS}
    doc = sweep(_cfg(), [T], SEEDS, ["vanilla"], tmp_path / "reuse", progress=False, reuse=True)
    assert {r: (tmp_path / "reuse" / "rnn-palindrome" / r / "summary.json").read_text() for r in RUNS} == before
    assert [r["test_accuracy"] for r in doc["runs"]] == [json.loads(before[r])["final"]["test_accuracy"] for r in RUNS]


KILLER = """
import os, signal, sys
from train.backends import jax_multiseed as multiseed
train, calls = multiseed.MultiSeedJaxBackend.train, []
def killing_train(self, idx):
    calls.append(1)
    if len(calls) == 4:  # after 3 epochs (their checkpoints saved or being written): SIGKILL
        os.kill(os.getpid(), signal.SIGKILL)
    return train(self, idx)
multiseed.MultiSeedJaxBackend.train = killing_train
from train.cli import main
sys.exit(main(sys.argv[1:]))
"""


RESUME = """
import sys
from train.runtime import enable_compilation_cache
from train.experiments.rnn import RNNConfig
from train.experiments.rnn_sweep import sweep
enable_compilation_cache()
cfg = RNNConfig(data_size=%d, batch_size=%d, epochs=%d, eval_batch=256, devices=1)
sweep(cfg, [%d], %d, ["vanilla"], sys.argv[-1], progress=False, resume=True, checkpoint_every=1)
""" % (DATA, BATCH, EPOCHS, T, SEEDS)


@pytest.mark.slow
@SHARES_THE_SWEEP
def test_sigkilled_multiseed_sweep_resumes_to_identical_summaries(sweep_and_separate, tmp_path):
    ref = sweep_and_separate[0]
    r = _run(SWEEP, tmp_path, code=KILLER)
    assert r.returncode == -9, r.stderr
    for run in RUNS:
        d = tmp_path / "rnn-palindrome" / run
        assert not (d / "summary.json").exists()
        assert {"1", "2"} <= {p.name for p in (d / "checkpoints").iterdir()}
    r = _run([], tmp_path, code=RESUME)  # rnn-sweep has no --resume flag (yet): sweep(resume=True)
    assert r.returncode == 0, r.stderr
    assert "resuming from checkpoint" in r.stdout
    for run in RUNS:
        a, b = ref / "rnn-palindrome" / run, tmp_path / "rnn-palindrome" / run
        sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
        assert sb["resumed_from_period"] in (2, 3)
        assert _strip(sa) == _strip(sb)  # the same program from the same checkpoint: bit for bit
        assert _rows(a / "metrics.jsonl") == _rows(b / "metrics.jsonl")
        assert json.loads((a / "grad_norms.json").read_text()) == json.loads((b / "grad_norms.json").read_text())


# What `python -m train` runs (cli.main), several command lines in one process on simulated devices.
CLI_CHILD = """
import json, sys
from train.cli import main
sys.exit(max(main(args) for args in json.loads(sys.argv[1])))
"""


@pytest.mark.slow
@pytest.mark.full
def test_sweep_seeds_spread_over_four_devices_in_one_program(tmp_path):
    """rnn-sweep --seeds 4 on 4 devices: one program, one seed per device (shard_map over the vmapped
    seeds); each seed as its run alone on one device, within TOL (bit-identical on XLA:CPU here)."""
    from conftest import xla_flags
    seeds, args = 4, ["--data-size", DATA, "--batch-size", BATCH, "--epochs", EPOCHS, "--eval-batch", 256, "--no-progress"]
    argvs = [["rnn-sweep", "--lengths", T, "--seeds", seeds, "--devices", 4, *args, "--out", tmp_path / "sweep"]]
    argvs += [["rnn-palindrome", "--input-length", T, "--seed", s, "--devices", 1, *args, "--out", tmp_path / "alone"]
              for s in range(seeds)]
    env = {**os.environ, "XLA_FLAGS": xla_flags("--xla_force_host_platform_device_count=4"), "JAX_PLATFORMS": "cpu"}
    r = subprocess.run([sys.executable, "-c", CLI_CHILD, json.dumps([list(map(str, a)) for a in argvs])], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "one after the other" not in r.stderr
    worst = 0.0
    for s in range(seeds):
        a, b = (tmp_path / d / "rnn-palindrome" / f"T{T}-vanilla-fp32-s{s}" for d in ("sweep", "alone"))
        sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
        # One program for the four seeds: a single training program compiled, the seeds over 4 devices.
        assert (sa["trained_together"], sa["seed_devices"], sa["devices"]) == (seeds, 4, 1), sa
        assert sa["compilations"]["programs"]["train_period"] == 1, sa["compilations"]
        _numbers_close(*({k: v for k, v in _strip(x).items() if k != "config_digest"} for x in (sa, sb)))  # --devices
        worst = max(worst, _max_metric_diff(a, b), _max_grad_norm_diff(a, b))
    print(f"max |spread seed - alone|: {worst:.2e}")
    assert worst <= TOL
