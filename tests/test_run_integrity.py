"""Results that cannot lie (issue 12): run identity, one writer per folder, resume of a finished run,
SIGTERM, shell-quoted hints, I/O errors, bounded memory, and the smaller cases."""

import errno
import json
import os
import signal
import stat

import numpy as np
import pytest

from conftest import killed_in_period, on_gpu
from test_resilience import RUNS, _popen, _wait_for, rows_without_time, strip
from train.engine import loop
from train import report
from train.engine.schedule import LazyPeriods
from train.cli import main
from train.experiments import cifar, rnn
from train.engine.driver import completed_summary
from train.engine.loop import train_loop
from train.engine.results import atomic_write_text, read_jsonl, run_config


def _summary(path):
    return json.loads(path.read_text())


# -- 1. a stale summary is never presented as a newer run's result ----------------------------

def test_an_interrupted_attempt_leaves_no_summary_and_the_report_does_not_reuse_it(tmp_path, monkeypatch):
    from test_report import lean_plan
    monkeypatch.setattr(report.plan, "make_plan", lean_plan)
    t19 = lean_plan(True, "", 0).rnn_t19
    work = tmp_path / rnn.EXPERIMENT
    # An earlier 1-epoch run of the same run folder finished...
    one = rnn.train_and_evaluate(rnn.RNNConfig(**{**t19.__dict__, "epochs": 1}), work, progress=False)
    run = work / t19.run_name
    # ...then the report's run started in the same folder and died after its first epoch.
    from train.backends.jax_backend import JaxBackend
    with killed_in_period(JaxBackend, 2):
        rnn.train_and_evaluate(t19, work, progress=False, checkpoint_every=1)
    assert not (run / "summary.json").exists()  # the 1-epoch summary went when the new attempt began
    # Even a stale copy put back is not the report's result: its attempt is not config.json's.
    (run / "summary.json").write_text(json.dumps({**one, "attempt": "someoneelse"}))
    assert completed_summary(run, run_config(t19)) is None
    text = report.run_report(True, tmp_path, data="synthetic:256", progress=False,
                             parts=("t19",)).read_text()
    assert f"resumed {run}" in text
    alone = rnn.train_and_evaluate(t19, tmp_path / "alone" / rnn.EXPERIMENT, progress=False)
    assert _summary(run / "summary.json")["final"] == alone["final"]  # the full run's figures, not epoch 1's
    assert alone["final"] != one["final"]


def test_summary_and_checkpoints_carry_the_attempt_of_config_json(tmp_path):
    cfg = cifar.mlp_config(data="synthetic:256", epochs=2, batch_size=64, hidden="32,16", devices=1)
    s = cifar.train_and_evaluate(cfg, tmp_path, progress=False, checkpoint_every=1)
    run = tmp_path / cfg.run_name
    config = _summary(run / "config.json")
    assert s["attempt"] == config["attempt"] and s["config_digest"] == config["config_digest"]
    assert completed_summary(run, run_config(cfg)) == s
    assert completed_summary(run, {**run_config(cfg), "epochs": 3}) is None
    again = cifar.train_and_evaluate(cfg, tmp_path, progress=False)  # a new attempt: a new id
    assert again["attempt"] != s["attempt"] and again["config_digest"] == s["config_digest"]


# -- 2. one writer per run folder ---------------------------------------------------------------

def test_a_second_run_of_a_folder_in_use_fails_at_once(cli_fast, finished_run, tmp_path):
    args, run = RUNS["cifar"]
    first = _popen(args, tmp_path / "x")
    _wait_for(tmp_path / "x" / run / "checkpoints" / "1" / "_CHECKPOINT_METADATA", first)  # --resume has one
    # Stopped, the first run still holds its folder, for as long as the checks take, at no CPU cost.
    first.send_signal(signal.SIGSTOP)
    try:
        for extra in ([], ["--resume"], ["--lr", "0.5"]):
            second = cli_fast(*args, *extra, "--out", tmp_path / "x", "--no-progress")
            assert second.returncode == 2, second.stderr
            line = second.stderr.strip()
            assert "\n" not in line and "is in use by another run (pid" in line, line
    finally:
        first.send_signal(signal.SIGCONT)
    _, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    assert rows_without_time(tmp_path / "x" / run / "metrics.jsonl") == \
        rows_without_time(finished_run("cifar") / run / "metrics.jsonl")


# -- 3. resume of a run whose last checkpoint is its final epoch --------------------------------

def test_resume_of_a_finished_run_rewrites_its_results(cli_fast, finished_run, tmp_path):
    args, run = RUNS["cifar"]
    finished_run("cifar", tmp_path)
    before = _summary(tmp_path / run / "summary.json")
    (tmp_path / run / "summary.json").unlink()  # killed while writing the summary and figures
    r = cli_fast(*args, "--resume", "--out", tmp_path, "--no-progress")
    assert r.returncode == 0, r.stderr
    assert strip(_summary(tmp_path / run / "summary.json")) == strip(before)
    assert (tmp_path / run / "confusion.png").stat().st_size > 1000


# -- 4. the hint is a command the same program accepts, shell-quoted ----------------------------

@pytest.mark.parametrize("argv, hint", [
    (["report", "--out", "my results"], "python -m train report --out 'my results'"),
    (["rnn-sweep", "--seeds", "3", "--resume"], "python -m train rnn-sweep --seeds 3 --resume"),
    (["mlp-cifar", "--out", "a b"], "python -m train mlp-cifar --out 'a b' --resume"),
])
def test_resume_hint(argv, hint):
    assert loop.command_hint(argv) == hint


def test_the_hint_is_the_command_given_not_the_process_arguments(tmp_path, monkeypatch, capsys):
    """main(argv) called in a process of its own (here pytest's): the hint repeats argv."""
    from test_api import ctrl_c_after_first_period
    ctrl_c_after_first_period(monkeypatch)
    args = ["rnn-palindrome", "--quick", "--epochs", "2", "--out", str(tmp_path / "a b"), "--no-progress"]
    assert main(args) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
        f"; resume with: python -m train rnn-palindrome --quick --epochs 2 --out '{tmp_path}/a b' "
        f"--no-progress --resume")


# -- 5. SIGTERM behaves like Ctrl-C ---------------------------------------------------------------

@pytest.mark.parametrize("name", ["rnn", "rnn-torch"])
def test_sigterm_checkpoints_and_resumes_exactly(cli_fast, finished_run, tmp_path, name):
    args, run = RUNS[name]
    args = [*args, "--epochs", "5"]  # epochs left to train when the signal lands, however slow the first write
    if RUNS[name][0][RUNS[name][0].index("--epochs") + 1] == "5":   # RUNS' own run: trained once per worker
        ref = finished_run(name)
    else:
        ref = tmp_path / "ref"
        r = cli_fast(*args, "--out", ref, "--no-progress")
        assert r.returncode == 0, r.stderr
    proc = _popen(args, tmp_path / "cut")
    _wait_for(tmp_path / "cut" / run / "checkpoints" / "1" / "_CHECKPOINT_METADATA", proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err
    assert "SIGTERM: stopped after epoch" in err and "resume with: python -m train rnn-palindrome" in err
    res = cli_fast(*args, "--resume", "--out", tmp_path / "cut", "--no-progress")
    assert res.returncode == 0, res.stderr
    assert strip(_summary(ref / run / "summary.json")) == strip(_summary(tmp_path / "cut" / run / "summary.json"))


# -- 6. a full disk: one line, exit 1, nothing half-written, earlier results untouched ----------

def _no_space(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_full_disk_while_writing_results(tmp_path, monkeypatch, capsys):
    args, run = RUNS["cifar"]
    import train.engine.results as results
    real = os.replace
    monkeypatch.setattr(results.os, "replace",
                        lambda a, b: _no_space() if str(b).endswith("metrics.jsonl") else real(a, b))
    assert main([*args, "--out", str(tmp_path), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"error: {tmp_path / run / 'metrics.jsonl'}: No space left on device"
    assert not list((tmp_path / run).glob(".*.tmp"))


def test_full_disk_while_writing_a_checkpoint(tmp_path, monkeypatch, capsys):
    import orbax.checkpoint as ocp
    args, run = RUNS["cifar"]
    ckpts = (tmp_path / run / "checkpoints").absolute()
    real = ocp.CheckpointManager.save

    def fills_the_disk(self, step, *a, **k):
        if step < 3:
            return real(self, step, *a, **k)
        (ckpts / f"{step}.orbax-checkpoint-tmp-123").mkdir()
        try:
            _no_space()
        except OSError as e:  # orbax reports the cause wrapped in an error of its own
            raise ValueError("tensorstore write failed") from e

    monkeypatch.setattr(ocp.CheckpointManager, "save", fills_the_disk)
    assert main([*args, "--out", str(tmp_path), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"error: cannot write checkpoint {ckpts}/3: No space left on device"
    assert sorted(p.name for p in ckpts.iterdir()) == ["1", "2"]  # no temporary folder; earlier ones intact
    assert not (tmp_path / run / "summary.json").exists()


# -- 9. bounded memory -------------------------------------------------------------------------

def test_epochs_are_made_when_the_loop_reaches_them(tmp_path):
    made = []

    class StopsAfterThree:
        framework, devices, param_count, compile_time_s = "fake", 1, 0, 0.0

        def train(self, idx):
            if len(made) == 3:
                os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C: the loop stops after this period
            return {"loss": np.zeros(len(idx)), "accuracy": np.zeros(len(idx))}

        def evaluate(self):
            return {"test": {"loss": 0.0, "accuracy": 0.0, "count": 1}}

    def make(p):
        made.append(p)
        return np.zeros((2, 4), np.int32)

    with pytest.raises(loop.Interrupted):
        train_loop(StopsAfterThree(), [LazyPeriods(make, 10**9, 2)], [tmp_path], progress=False)
    assert made == [0, 1, 2]
    assert len(read_jsonl(tmp_path / "metrics.jsonl")) == 6


def test_rnn_evaluation_memory_does_not_grow_with_length():
    assert rnn.eval_chunk(rnn.RNNConfig(input_length=19)) == 4096
    long = rnn.RNNConfig(input_length=1000)
    assert long.eval_batch * 1000 * 128 > rnn.EVAL_ELEMENTS >= rnn.eval_chunk(long) * 1000 * 128 > 0


# -- 10. the smaller ones -------------------------------------------------------------------

def test_results_files_follow_the_umask(tmp_path):
    for mask, mode in ((0o022, 0o644), (0o077, 0o600), (0o027, 0o640)):
        old = os.umask(mask)
        try:
            atomic_write_text(tmp_path / f"{mask}.json", "{}")
        finally:
            os.umask(old)
        assert stat.S_IMODE((tmp_path / f"{mask}.json").stat().st_mode) == mode


@pytest.mark.skipif(on_gpu(), reason="needs a machine without a GPU")
def test_a_backend_jax_cannot_start_is_one_line(cli, tmp_path):
    r = cli("mlp-toy", "--out", tmp_path, env={"JAX_PLATFORMS": "cuda"})
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("error: JAX could not start a backend (JAX_PLATFORMS=cuda")
    assert not any(tmp_path.iterdir())


def test_an_undeletable_old_checkpoint_folder_names_the_cause(tmp_path, monkeypatch, capsys):
    args, run = RUNS["cifar"]
    assert main([*args, "--epochs", "1", "--out", str(tmp_path), "--no-progress"]) == 0
    capsys.readouterr()
    import train.backends.checkpoint as checkpoint

    def refuses(path, *a, **k):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    monkeypatch.setattr(checkpoint.shutil, "rmtree", refuses)
    assert main([*args, "--epochs", "1", "--out", str(tmp_path), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot remove the earlier run's checkpoints in ") and "Permission denied" in err
