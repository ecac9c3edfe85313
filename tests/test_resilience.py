"""Runs that survive: resume after SIGKILL, damaged checkpoints, determinism, divergence."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, wait_until
from train.engine.results import TIMING_FIELDS, read_jsonl

TIMING = set(TIMING_FIELDS) | {"attempt"}  # what differs between two runs of the same settings

# --checkpoint-every 1: a checkpoint after every epoch, whatever the disk's speed (the tests kill mid-run).
CIFAR = ["mlp-cifar", "--data", "synthetic:1024", "--epochs", "5", "--batch-size", "64", "--variant", "improved",
         "--hidden", "64,32", "--checkpoint-every", "1"]
RNN = ["rnn-palindrome", "--input-length", "6", "--data-size", "2000", "--epochs", "5", "--batch-size", "32",
       "--checkpoint-every", "1"]
# The PyTorch twin (RMSprop + StepLR, clipping); test_torch_resume.py resumes the others in-process.
RNN_TORCH = ["rnn-palindrome", "--framework", "torch", "--input-length", "10", "--epochs", "3", "--data-size", "2000",
             "--batch-size", "64", "--hidden", "64", "--checkpoint-every", "1"]
RUNS = {"cifar": (CIFAR, "mlp-cifar/improved-fp32-s0"), "rnn": (RNN, "rnn-palindrome/T6-vanilla-fp32-s0"),
        "rnn-torch": (RNN_TORCH, "rnn-palindrome/T10-vanilla-fp32-torch-s0")}


def strip(summary):
    return {k: v for k, v in summary.items() if k not in TIMING}


def rows_without_time(path):
    return [{k: v for k, v in r.items() if k != "time_s"} for r in read_jsonl(path)]


def _popen(args, out):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "train", *args, "--out", str(out), "--no-progress"], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, proc, timeout=300):
    wait_until(path.exists, proc, f"{path} appeared", timeout)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(RUNS))
def test_sigkill_then_resume_matches_uninterrupted(cli_fast, finished_run, tmp_path, name):
    args, run = RUNS[name]
    epochs = int(args[args.index("--epochs") + 1])
    kill_after = epochs // 2
    ref = finished_run(name)
    proc = _popen(args, tmp_path / "cut")
    _wait_for(tmp_path / "cut" / run / "checkpoints" / str(kill_after) / "_CHECKPOINT_METADATA", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = sorted(p.name for p in (tmp_path / "cut" / run / "checkpoints").iterdir())
    assert str(kill_after) in done and str(epochs) not in done, done
    assert not (tmp_path / "cut" / run / "summary.json").exists()
    res = cli_fast(*args, "--resume", "--out", tmp_path / "cut", "--no-progress")
    assert res.returncode == 0, res.stderr
    assert "resuming from checkpoint" in res.stdout
    a = json.loads((ref / run / "summary.json").read_text())
    b = json.loads((tmp_path / "cut" / run / "summary.json").read_text())
    assert b["resumed_from_period"] >= kill_after
    assert strip(a) == strip(b)
    assert rows_without_time(ref / run / "metrics.jsonl") == rows_without_time(tmp_path / "cut" / run / "metrics.jsonl")


def test_damaged_checkpoint_falls_back_to_previous(cli_fast, finished_run, tmp_path):
    args, run = RUNS["rnn"]
    finished_run("rnn", tmp_path)
    ckpts = tmp_path / run / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["3", "4", "5"]
    # Truncate every data file of the newest checkpoint, as a crash or a full disk would.
    victims = [p for p in (ckpts / "5").rglob("*") if p.is_file() and p.stat().st_size > 0 and "state" in p.parts]
    assert victims
    for p in victims:
        with open(p, "r+b") as f:
            f.truncate(max(0, p.stat().st_size // 2))
    expected = json.loads((tmp_path / run / "summary.json").read_text())
    res = cli_fast(*args, "--resume", "--out", tmp_path, "--no-progress")
    assert res.returncode == 0, res.stderr
    assert "checkpoint" in res.stdout and "damaged" in res.stdout
    assert "resuming from checkpoint 4" in res.stdout
    got = json.loads((tmp_path / run / "summary.json").read_text())
    assert strip(got) == strip(expected)


def test_same_seed_twice_gives_identical_metrics(cli, cli_fast, tmp_path):
    args, run = RUNS["cifar"]
    for sub, run_cli in (("a", cli), ("b", cli_fast)):  # two processes: nothing rides on process state
        r = run_cli(*args, "--epochs", "2", "--out", tmp_path / sub, "--no-progress")
        assert r.returncode == 0, r.stderr
    assert rows_without_time(tmp_path / "a" / run / "metrics.jsonl") == rows_without_time(tmp_path / "b" / run / "metrics.jsonl")


def test_resume_without_checkpoint_is_a_one_line_error(cli_fast, tmp_path):
    r = cli_fast(*RUNS["rnn"][0], "--resume", "--out", tmp_path, "--no-progress")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().startswith("error: --resume: no checkpoint")


def test_divergence_stops_with_step_and_cause(cli_fast, tmp_path):
    r = cli_fast("mlp-cifar", "--data", "synthetic:512", "--epochs", "3", "--lr", "1e6", "--checkpoint-every", "1",
            "--out", tmp_path, "--no-progress")
    assert r.returncode == 3 and "Traceback" not in r.stderr
    msg = r.stderr.strip().splitlines()[-1]
    assert "NaN" in msg and "at step" in msg and "learning rate" in msg and "checkpoint" in msg
    assert not (tmp_path / "mlp-cifar" / "plain-fp32-s0" / "summary.json").exists()


def test_ctrl_c_saves_checkpoint_and_says_how_to_resume(tmp_path):
    args, run = RUNS["cifar"]
    proc = _popen([*args, "--epochs", "30"], tmp_path)
    _wait_for(tmp_path / run / "metrics.jsonl", proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "resume with: python -m train mlp-cifar" in err and "--resume" in err
    assert "Traceback" not in err
    assert any((tmp_path / run / "checkpoints").iterdir())
