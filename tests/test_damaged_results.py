"""Finished runs whose results were damaged afterwards (a file deleted, emptied or cut short), runs
still going, and runs of different tasks: what ``compare``, the report and ``--resume`` make of them."""

import json
import shutil

import pytest

from conftest import run_cli_in_process
from test_report import tiny_plan
from train import report
from train.experiments import cifar, mlp_toy
from train.engine.driver import completed_summary
from train.engine.results import lock_run_dir, read_jsonl, release_run_dir, run_config
from train.engine.run_files import damage

TOY = mlp_toy.ToyConfig(dataset="moons", steps=60, samples=200, devices=1, framework="both")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """moons in NumPy and JAX, and circles in JAX: finished runs to copy and damage."""
    work = tmp_path_factory.mktemp("toy") / mlp_toy.EXPERIMENT
    mlp_toy.train_and_evaluate(TOY, work, progress=False)
    mlp_toy.train_and_evaluate(mlp_toy.ToyConfig(**{**TOY.__dict__, "dataset": "circles", "framework": "jax"}),
                               work, progress=False)
    return work


def copy_runs(toy, tmp_path, *names):
    """Copies of finished runs under ``tmp_path``; a name 'run:copy' copies run to the folder copy."""
    out = []
    for name in names:
        src, _, dst = name.partition(":")
        shutil.copytree(toy / src, tmp_path / (dst or src))
        out.append(tmp_path / (dst or src))
    return out


def cut_mid_line(path):
    text = path.read_text()
    path.write_text(text[: text.index("\n", len(text) // 2) - 5])


def cut_at_a_line_end(path):
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[: len(lines) // 2]))


DAMAGE = {"cut mid-line": cut_mid_line, "cut at a line end": cut_at_a_line_end,
          "emptied": lambda p: p.write_text(""), "deleted": lambda p: p.unlink()}


@pytest.mark.parametrize("how", DAMAGE)
def test_compare_names_the_damaged_run_and_file(toy, tmp_path, how):
    a, b = copy_runs(toy, tmp_path, "moons-numpy-s0", "moons-jax-s0")
    DAMAGE[how](b / "metrics.jsonl")
    assert completed_summary(b, run_config(TOY)) is None  # nor does the report reuse it
    r = run_cli_in_process("compare", a, b, "--out", tmp_path / "cmp")
    assert r.returncode == 2, r.stdout
    line = r.stderr.strip()
    assert "\n" not in line and line.startswith(f"error: {b}") and "metrics.jsonl" in line, line
    assert not (tmp_path / "cmp").exists()


def test_a_damaged_summary_json_is_named(toy, tmp_path):
    a, b = copy_runs(toy, tmp_path, "moons-numpy-s0", "moons-jax-s0")
    cut_mid_line(b / "summary.json")
    r = run_cli_in_process("compare", a, b, "--out", tmp_path / "cmp")
    assert r.returncode == 2 and r.stderr.strip() == f"error: {b / 'summary.json'} is damaged (not JSON: cut short?)"


def test_a_glob_leaves_out_damaged_and_running_runs_with_a_note(toy, tmp_path):
    good_a, good_b, damaged, running = copy_runs(toy, tmp_path, "moons-numpy-s0", "moons-jax-s0",
                                                 "moons-jax-s0:moons-damaged", "moons-jax-s0:moons-running")
    cut_at_a_line_end(damaged / "metrics.jsonl")
    (running / "summary.json").unlink()  # a run going has no summary yet, and holds its lock
    lock_run_dir(running)
    try:
        r = run_cli_in_process("compare", tmp_path / "moons-*", "--out", tmp_path / "cmp")
        none = run_cli_in_process("compare", tmp_path / "moons-[dr]*", "--out", tmp_path / "none")
    finally:
        release_run_dir(running)
    assert none.returncode == 2 and not (tmp_path / "none").exists()
    assert none.stderr.splitlines()[-1] == f"error: no finished run folder matches '{tmp_path / 'moons-[dr]*'}'"
    assert [x.split(":")[0] for x in none.stderr.splitlines()] == ["note", "note", "error"]
    assert r.returncode == 0, r.stderr
    notes = [x for x in r.stderr.splitlines() if x.startswith("note: left out")]
    assert len(notes) == 2
    assert f"{damaged} is damaged (metrics.jsonl: changed after the run finished" in notes[0]
    assert f"{running} is still running (pid" in notes[1]
    doc = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert [run["path"] for run in doc["runs"]] == [str(good_b), str(good_a)]  # sorted names: jax, numpy


def test_an_explicit_running_run_is_a_clear_error(toy, tmp_path):
    a, b = copy_runs(toy, tmp_path, "moons-numpy-s0", "moons-jax-s0")
    (b / "summary.json").unlink()
    lock_run_dir(b)
    try:
        r = run_cli_in_process("compare", a, b, "--out", tmp_path / "cmp")
    finally:
        release_run_dir(b)
    assert r.returncode == 2 and r.stderr.startswith(f"error: {b} is still running (pid "), r.stderr
    assert r.stderr.strip().endswith("compare it once it has finished")


def test_compare_does_not_write_into_a_run_folder(toy, tmp_path):
    a, b = copy_runs(toy, tmp_path, "moons-numpy-s0", "moons-jax-s0")
    before = (b / "curves.png").read_bytes()
    r = run_cli_in_process("compare", a, b, "--out", b)
    assert r.returncode == 2 and "is a run folder" in r.stderr, r.stderr
    assert (b / "curves.png").read_bytes() == before and not (b / "compare.json").exists()


def test_runs_of_different_tasks_are_compared_with_a_note(toy, tmp_path):
    moons, circles = copy_runs(toy, tmp_path, "moons-jax-s0", "circles-jax-s0")
    r = run_cli_in_process("compare", moons, circles, "--out", tmp_path / "cmp")
    assert r.returncode == 0, r.stderr
    note = "these runs learned different tasks (mlp-toy on moons; mlp-toy on circles)"
    assert f"note: {note}" in r.stderr
    assert json.loads((tmp_path / "cmp" / "compare.json").read_text())["note"].startswith(note)
    assert f"**Note:** {note}" in (tmp_path / "cmp" / "compare.md").read_text()
    same = run_cli_in_process("compare", *copy_runs(toy, tmp_path / "same", "moons-numpy-s0", "moons-jax-s0"),
                              "--out", tmp_path / "same-cmp")
    assert same.returncode == 0 and "note:" not in same.stderr


@pytest.mark.slow
def test_the_report_and_resume_redo_the_damaged_results_of_a_finished_run(tmp_path, capsys):
    cfg = tiny_plan(True, "", 0).cifar[0]
    run = tmp_path / cfg.run_name
    log = []
    first = report._run_or_reuse(cifar.train_and_evaluate, cfg, tmp_path, cfg.run_name, force=False,
                                 progress=False, log=log)
    rows = read_jsonl(run / "metrics.jsonl")
    cut_mid_line(run / "metrics.jsonl")
    (run / "confusion.png").unlink()
    capsys.readouterr()
    report._run_or_reuse(cifar.train_and_evaluate, cfg, tmp_path, cfg.run_name, force=False, progress=False, log=log)
    why = ("confusion.png: missing (deleted after the run finished); metrics.jsonl: changed after the run "
           "finished (cut short, emptied or rewritten)")
    # Resumed from its final checkpoint, which holds every row: nothing is trained again.
    assert log == [f"ran {run}", f"resumed {run} (damaged: {why})"]
    assert f"note: {run} finished, but its results were damaged since ({why}); redoing it" in capsys.readouterr().err
    assert read_jsonl(run / "metrics.jsonl") == rows
    assert (run / "confusion.png").stat().st_size > 1000
    summary = json.loads((run / "summary.json").read_text())
    assert damage(run, summary) is None and completed_summary(run, run_config(cfg)) == summary
    # --resume does the same.
    (run / "metrics.jsonl").write_text("")
    (run / "misclassified.png").unlink()
    again = cifar.train_and_evaluate(cfg, tmp_path, progress=False, resume=True)
    assert read_jsonl(run / "metrics.jsonl") == rows and again["final"] == first["final"]
    assert (run / "misclassified.png").stat().st_size > 1000 and damage(run, again) is None


def test_the_report_redoes_toy_runs_whose_comparison_was_damaged(toy, tmp_path, capsys):
    work = tmp_path / mlp_toy.EXPERIMENT
    copy_runs(toy, work, "moons-numpy-s0", "moons-jax-s0", "moons-compare-s0")
    comparison = work / "moons-compare-s0" / "compare.json"
    cut_mid_line(comparison)
    log = []
    got = report.runner._toy_run_or_reuse(TOY, work, force=False, progress=False, log=log)
    assert log == [f"ran {work}/moons-*"]
    assert f"note: {comparison} cannot be read (not JSON: cut short?)" in capsys.readouterr().err
    assert json.loads(comparison.read_text()) == got["compare"]
    before = json.loads((toy / "moons-compare-s0" / "compare.json").read_text())
    untimed = lambda doc: [{k: v for k, v in p.items() if not k.endswith("_ratio")} for p in doc["pairs"]]  # noqa: E731
    assert untimed(got["compare"]) == untimed(before) and before["pairs"][0]["evaluations_compared"] > 0


def test_resume_of_a_toy_run_without_checkpoints_is_a_one_line_error(toy, tmp_path):
    (run,) = copy_runs(toy, tmp_path / mlp_toy.EXPERIMENT, "moons-jax-s0")
    (run / "metrics.jsonl").unlink()
    r = run_cli_in_process("mlp-toy", "--dataset", "moons", "--framework", "jax", "--steps", "60", "--samples", "200",
                           "--devices", "1", "--out", tmp_path, "--resume", "--no-progress")
    assert r.returncode == 2 and r.stderr == f"error: --resume: no checkpoint to resume from in {run / 'checkpoints'}\n"
