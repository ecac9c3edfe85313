"""Hostile input: odd --out paths, folders that cannot be written, two reports of one results folder.

Each bad path is one line, ``error: ...``, exit code 2, and nothing written.
"""

import errno
import fcntl
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, wait_until
from train.cli import main
from train.report import runner
from train.errors import UsageError

TOY = ["mlp-toy", "--framework", "jax", "--steps", "30", "--no-progress"]
REPORT = ["report", "--quick", "--data", "synthetic:256", "--parts", "toy", "--no-progress"]


def test_spaces_unicode_and_quotes_in_out_just_work(tmp_path, capsys):
    """Including the checkpoints (orbax) and a resume from them."""
    out = tmp_path / "my results" / "ünïcødé ☃ 'q\" $x"
    rnn = ["rnn-palindrome", "--quick", "--epochs", "1", "--no-progress", "--out", str(out)]
    assert main(rnn) == 0
    assert main([*rnn, "--resume"]) == 0
    run = out / "rnn-palindrome" / "T5-vanilla-fp32-s0"
    assert f"resuming from checkpoint 1 of 1 in {run / 'checkpoints'}" in capsys.readouterr().out
    assert json.loads((run / "summary.json").read_text())["epochs"] == 1


def read_only_below(root: Path, monkeypatch) -> None:
    """Creating anything under ``root`` fails as on a read-only file system, at the OS calls
    (the tests may run as root, whom permission bits do not stop)."""
    def refuse_below_root(real, writes):
        def call(path, *args, **kwargs):
            if writes(*args) and Path(os.path.abspath(os.fsdecode(path))).is_relative_to(root):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))
            return real(path, *args, **kwargs)
        return call

    monkeypatch.setattr(os, "mkdir", refuse_below_root(os.mkdir, lambda *a: True))
    monkeypatch.setattr(os, "open", refuse_below_root(
        os.open, lambda flags, *a: flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)))


# The bad --out (in the test's folder, which holds a file "file"), and how the error ends.
BAD_OUT = {
    "a name over 255 bytes": ("x" * 300, "File name too long"),
    "a file": ("file", "{root}/file is not a folder"),
    "a folder below a file": ("file/sub", "{root}/file is not a folder"),
    "a read-only file system": ("ro/results", "Read-only file system"),
}
COMMANDS = {"experiment": TOY, "sweep": ["rnn-sweep", "--quick", "--no-progress"], "report": REPORT}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("case", sorted(BAD_OUT))
def test_an_out_that_cannot_be_written_is_one_line(tmp_path, monkeypatch, capsys, case, command):
    (tmp_path / "file").write_text("not a folder")
    read_only_below(tmp_path / "ro", monkeypatch)
    out, reason = BAD_OUT[case][0], BAD_OUT[case][1].format(root=tmp_path)
    assert main([*COMMANDS[command], "--out", str(tmp_path / out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: cannot write results to {tmp_path / out}") and err.endswith(reason), err
    assert "\n" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"], "nothing may be written"


@pytest.fixture(scope="module")
def two_toy_runs(tmp_path_factory) -> list[str]:
    out = tmp_path_factory.mktemp("runs")
    assert main([*TOY, "--framework", "both", "--out", str(out)]) == 0
    return [str(out / "mlp-toy" / f"moons-{f}-s0") for f in ("numpy", "jax")]


@pytest.mark.parametrize("case", sorted(BAD_OUT))
def test_a_comparison_that_cannot_be_written_is_one_line(tmp_path, monkeypatch, capsys, two_toy_runs, case):
    (tmp_path / "file").write_text("not a folder")
    read_only_below(tmp_path / "ro", monkeypatch)
    out, reason = BAD_OUT[case][0], BAD_OUT[case][1].format(root=tmp_path)
    capsys.readouterr()
    assert main(["compare", *two_toy_runs, "--out", str(tmp_path / out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: cannot write the comparison to {tmp_path / out}") and err.endswith(reason), err
    assert "\n" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"], "nothing may be written"


@pytest.mark.parametrize("flag", ["--profile", "--dump-hlo"])
@pytest.mark.parametrize("case, reason", [("ro/traces", "Read-only file system"),
                                          ("file", "{root}/file is not a folder")])
def test_an_artifact_folder_that_cannot_be_written_is_refused_before_the_run(tmp_path, monkeypatch, capsys,
                                                                             flag, case, reason):
    (tmp_path / "file").write_text("not a folder")
    read_only_below(tmp_path / "ro", monkeypatch)
    assert main([*TOY, "--out", str(tmp_path / "out"), flag, str(tmp_path / case)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: cannot write {flag} output to {tmp_path / case}: {reason.format(root=tmp_path)}", err
    assert not (tmp_path / "out").exists(), "no run may start"


# -- two reports of one results folder ----------------------------------------------------------

def lock_is_free(folder: Path) -> bool:
    """Whether a new holder could take ``folder``'s run lock now (this process's own hold counts)."""
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def held_locks(folder: Path) -> list[Path]:
    """The lock files under ``folder`` that name a holder (written once the lock is taken)."""
    return [p for p in folder.rglob(".lock") if p.stat().st_size] if folder.exists() else []


def wait_for_a_lock(folder: Path, proc, timeout=300) -> None:
    wait_until(lambda: held_locks(folder), proc, f"a lock under {folder}", timeout)


@pytest.mark.slow
def test_a_second_report_of_results_in_use_fails_at_once(tmp_path, capsys):
    out = tmp_path / "results"
    first = subprocess.Popen([sys.executable, "-m", "train", *REPORT, "--out", str(out)], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_a_lock(out, first)
        first.send_signal(signal.SIGSTOP)  # holds its folder, at no CPU cost, while the second tries
        assert main([*REPORT, "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: {out} is in use by another report (pid {first.pid} ") and "\n" not in err, err
    finally:
        first.kill()  # SIGKILL: no chance to clean up
        first.communicate()
    assert lock_is_free(out), "a killed report's lock goes with it"


def test_a_report_holds_its_folder_until_it_ends_even_by_an_error(tmp_path, monkeypatch):
    held = []

    def fails_halfway(plan, out, *args, **kwargs):
        held.append(not lock_is_free(out))
        raise UsageError("a run's bad setting")

    monkeypatch.setattr(runner, "_run_plan", fails_halfway)
    with pytest.raises(UsageError):
        runner.run_report(True, tmp_path, data="synthetic:256", parts=("toy",), progress=False)
    assert held == [True] and lock_is_free(tmp_path)
