"""Data parallelism: N devices compute what one device computes on the same global batch.

Simulated CPU devices need XLA_FLAGS before JAX starts, so each check runs in a subprocess.
"""

import json
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, xla_flags
from tolerances import U32, run_bound

# Every test here starts processes with simulated devices or several processes: `make test-all` (CI).
pytestmark = pytest.mark.full

# pmap sums each step's gradients and batch statistics over the devices' shards: another order of the
# batch sums, and XLA may tile a layer's sums otherwise for the smaller per-device batch. Each of the
# 2 periods x 3 steps then adds, in each run, the rounding of the widest sum: the 192 inputs of the
# CIFAR-like MLPs (run_bound, margin 2; weights and metrics O(1)).
TOL = run_bound(U32, n=192, steps=6, margin=2)
# The CNN is ill-conditioned on purpose-built small inputs: its last blocks batch-normalise 1x1 maps
# whose per-channel variance over 32 examples can be near zero, so 1 / sqrt(var + eps) multiplies a
# gradient's rounding by up to 1 / sqrt(1e-5) = 316: the 32-example sums of its 2 steps, times that.
# Its evaluation and predictions still agree to TOL.
PARAMS_TOL = {"cnn": run_bound(U32, n=32, steps=2, margin=2) / np.sqrt(1e-5)}


PATHS = ("pmap", "shard_map", "jit")


def _env(n_devices):
    return {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu",
            "XLA_FLAGS": xla_flags(f"--xla_force_host_platform_device_count={n_devices}")}


@pytest.mark.slow
def test_four_devices_equal_one_device_on_every_path():
    r = subprocess.run([sys.executable, str(ROOT / "tests" / "pmap_equivalence.py"), "4"], env=_env(4),
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads(r.stdout.strip().splitlines()[-1])
    assert set(report) == {"mlp-toy", "mlp-improved", "mlp-improved-unfused", "cnn", "rnn"}
    for name, by_path in report.items():
        # Every path against one device, and shard_map and jit against pmap (two runs each within
        # the bound of one device, so within twice it of each other).
        assert set(by_path) == {*PATHS, "shard_map-vs-pmap", "jit-vs-pmap"}, name
        for path, d in by_path.items():
            k = 2 if path.endswith("-vs-pmap") else 1
            assert d["steps"] >= 2, (name, path)
            assert d["params"] <= k * PARAMS_TOL.get(name, TOL), (name, path, d)
            assert d["model_state"] <= k * TOL, (name, path, d)
            assert d["eval"] <= k * TOL, (name, path, d)
            assert d["predictions_equal"], (name, path)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_equal_one_process_with_two_devices(tmp_path):
    """Every path across 2 processes (gloo) against 1 process with 2 devices; off pmap, the state is also
    checkpointed by both processes (orbax, sharded, never gathered) and restored into a fresh backend."""
    script, paths = str(ROOT / "tests" / "multiprocess_equivalence.py"), ",".join(PATHS)
    single = subprocess.run([sys.executable, script, str(tmp_path / "single.json"), paths], env=_env(2),
                            capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    port = str(_free_port())
    procs = [subprocess.Popen([sys.executable, script, str(tmp_path / "multi.json"), paths, str(i), "2", port],
                              env=_env(1), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    for p in procs:
        try:
            _, err = p.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail("multi-process run timed out")
        assert p.returncode == 0, err[-3000:]
    single = json.loads((tmp_path / "single.json").read_text())
    multi = json.loads((tmp_path / "multi.json").read_text())
    # Two processes (gloo's all-reduce) against two local devices: sums over the 2 shards in either order,
    # in each of 3 epochs x 3 steps, of batches of 32 (the MLP's widest sum; run_bound, margin 2).
    tol = run_bound(U32, n=32, steps=9, margin=2)
    for path in PATHS:
        a, b = single[path], multi[path]
        assert a["shards"] == b["shards"] == 2
        for x, y in zip(a["leaves"], b["leaves"]):
            np.testing.assert_allclose(x, y, atol=tol, rtol=0, err_msg=path)
        for ea, eb in zip(a["evals"], b["evals"]):
            for split in ea:
                assert abs(ea[split]["loss"] - eb[split]["loss"]) <= tol, path
                assert ea[split]["accuracy"] == eb[split]["accuracy"], path
        assert a["predictions"] == b["predictions"], path
        if path != "pmap":  # saved after epoch 2 by every process, restored bit for bit (each process checks its own)
            assert a["restored"] == b["restored"] == {"period": 2, "meta_epoch": 2, "equal": True}, path
            assert (tmp_path / f"multi.json.{path}.checkpoints" / "2" / "state").is_dir()


FOUR_DEVICE_RUNS = [
    (["mlp-toy", "--dataset", "moons", "--framework", "jax", "--steps", "60", "--batch-size", "32"],
     "mlp-toy/moons-jax-s0"),
    # The plain MLP: the improved one's AdamW turns the rounding noise in the gradient of each bias before a
    # batch norm (zero but for rounding) into whole learning-rate steps, beyond any rounding bound
    # (tolerances.adam_drift_bound); its batch norm and dropout are checked on every path with SGD in
    # tests/pmap_equivalence.py.
    (["mlp-cifar", "--data", "synthetic:512", "--epochs", "1", "--batch-size", "64", "--variant", "plain"],
     "mlp-cifar/plain-fp32-s0"),
    (["cnn-cifar", "--data", "synthetic:64", "--epochs", "1", "--batch-size", "32", "--limit-test", "16",
      "--eval-batch", "8"], "cnn-cifar/cnn-fp32-s0"),
    (["rnn-palindrome", "--input-length", "5", "--epochs", "2", "--data-size", "1000", "--batch-size", "64"],
     "rnn-palindrome/T5-vanilla-fp32-s0"),
]
# Each command line as `python -m train` runs it (cli.main), all in one process on 4 simulated devices.
# The final metrics of 4 devices and of 1 differ by the reordered sums of every step: the widest is the first
# layer's (2, 3072, 3072 inputs; the RNN's 128 hidden units), over the run's steps (run_bound, margin 2). The
# CNN's batch norm on 1x1 maps amplifies rounding by up to 1 / sqrt(eps) (see PARAMS_TOL).
CLI_TOL = {"mlp-toy/moons-jax-s0": run_bound(U32, n=32, steps=60, margin=2),
           "mlp-cifar/plain-fp32-s0": run_bound(U32, n=3072, steps=8, margin=2),
           "cnn-cifar/cnn-fp32-s0": run_bound(U32, n=32 * 9 * 512, steps=2, margin=2) / np.sqrt(1e-5),
           "rnn-palindrome/T5-vanilla-fp32-s0": run_bound(U32, n=128, steps=32, margin=2)}
FOUR_DEVICE_CHILD = """
import json, sys
from train.cli import main
sys.exit(max(main(args) for args in json.loads(sys.argv[1])))
"""


FINAL = ("test_loss", "test_accuracy", "train_loss", "train_accuracy")


@pytest.mark.slow(longest=True)
def test_cli_every_path_on_four_devices_equals_one_device(tmp_path):
    """Each experiment as `python -m train` runs it: --devices 1, then --devices 4 on every --parallel path,
    all in one process on 4 simulated devices; the final metrics agree."""
    argvs, outs = [], []
    for i, (args, run) in enumerate(FOUR_DEVICE_RUNS):
        # The CNN's convolutions compile slowly on XLA:CPU: its CLI run on jit, the path whose model differs
        # (no axis name); tests/pmap_equivalence.py checks the (narrow) CNN on every path.
        paths = ("jit",) if run.startswith("cnn") else PATHS
        for how in (["--devices", "1"], *(["--devices", "4", "--parallel", p] for p in paths)):
            outs.append((run, how, tmp_path / f"{i}-{how[-1]}"))
            argvs.append([*args, *how, "--out", str(outs[-1][2]), "--no-progress"])
    r = subprocess.run([sys.executable, "-c", FOUR_DEVICE_CHILD, json.dumps(argvs)], cwd=ROOT, env=_env(4),
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    one = {}
    for run, how, out in outs:
        summary = json.loads((out / run / "summary.json").read_text())
        final = summary["final"]
        if how[1] == "1":
            one[run] = final
            assert summary["devices"] == 1, run
            continue
        assert summary["devices"] == 4, (run, how)
        config = json.loads((out / run / "config.json").read_text())["config"]
        assert config.get("parallel", "pmap") == how[-1], (run, how)
        for k in FINAL:
            if final.get(k) is not None:
                assert abs(final[k] - one[run][k]) <= CLI_TOL[run], (run, how, k, final[k], one[run][k])


@pytest.mark.slow
def test_multiprocess_cli_only_process_zero_writes(cli, tmp_path):
    port = str(_free_port())
    env = _env(1)
    cmd = [sys.executable, "-m", "train", "mlp-toy", "--dataset", "blobs", "--framework", "both", "--steps", "60",
           "--batch-size", "32", "--no-progress", "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2"]
    procs = [subprocess.Popen(cmd + ["--process-id", str(i), "--out", str(tmp_path / f"p{i}")], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    summary = json.loads((tmp_path / "p0/mlp-toy/blobs-jax-s0/summary.json").read_text())
    assert summary["devices"] == 2
    assert (tmp_path / "p0/mlp-toy/blobs-compare-s0/compare.json").exists()
    assert not (tmp_path / "p1").exists()  # process 1 wrote nothing: no file, no folder


@pytest.mark.slow
def test_multiprocess_cli_checkpoints_global_state_and_resumes(tmp_path):
    """Two processes on the shard_map path, one shared --out (as hosts on a shared file system): both
    write the sharded checkpoints, and after losing the last one, both resume from the one before it and
    end with the uninterrupted run's numbers."""
    run = tmp_path / "mlp-toy" / "blobs-jax-s0"

    def train(*extra):
        port = str(_free_port())
        cmd = [sys.executable, "-m", "train", "mlp-toy", "--dataset", "blobs", "--framework", "jax", "--steps", "60",
               "--batch-size", "32", "--eval-every", "20", "--parallel", "shard_map", "--checkpoint-every", "1",
               "--no-progress", "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--out", str(tmp_path),
               *extra]
        procs = [subprocess.Popen(cmd + ["--process-id", str(i)], cwd=ROOT, env=_env(1), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for i in range(2)]
        outs = [p.communicate(timeout=600) for p in procs]
        for p, (_, err) in zip(procs, outs):
            assert p.returncode == 0, err[-3000:]
        return [o for o, _ in outs]

    train()
    full = json.loads((run / "summary.json").read_text())
    assert full["devices"] == 2 and sorted(p.name for p in (run / "checkpoints").iterdir()) == ["1", "2", "3"]
    (run / "summary.json").unlink()
    shutil.rmtree(run / "checkpoints" / "3")  # as if both were killed in the last period
    for out in train("--resume"):
        assert "resuming from checkpoint 2 of 3" in out
    again = json.loads((run / "summary.json").read_text())
    assert again["resumed_from_period"] == 2 and again["final"] == full["final"]
