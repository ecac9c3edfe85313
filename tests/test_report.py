"""The report: every experiment, REPORT.md with existing figures, reuse of finished runs, --force."""

import dataclasses
import re

import pytest

from tolerances import U32, run_bound
from train import report
from train.experiments import cifar, mlp_toy, rnn


def tiny_plan(quick, data, seed):
    plan = report.Plan(quick=True, torch=True)
    # moons in every framework (PyTorch too), the others NumPy and JAX: both toy layouts, cheaply.
    plan.toy = [mlp_toy.ToyConfig(dataset=d, steps=60, samples=200, seed=seed, devices=1,
                                  framework="all" if d == "moons" else "both") for d in ("moons", "circles", "blobs")]
    plan.cifar = [cifar.mlp_config(data="synthetic:256", epochs=2, batch_size=64, hidden="32,16", seed=seed),
                  cifar.mlp_config(data="synthetic:256", variant="improved", epochs=2, batch_size=64, hidden="32,16",
                                   seed=seed)]
    plan.rnn_t19 = rnn.RNNConfig(input_length=19, data_size=512, epochs=2, batch_size=64, hidden=16, seed=seed)
    plan.sweep = {"cfg": rnn.RNNConfig(data_size=512, epochs=2, batch_size=64, hidden=16, seed=seed),
                  "lengths": [3, 5], "seeds": 1, "cells": ["vanilla", "lstm"]}
    plan.ablation = {**plan.sweep, "cfg": dataclasses.replace(plan.sweep["cfg"], lr_gamma=1.0), "cells": ["vanilla"]}
    plan.twins = [dataclasses.replace(plan.rnn_t19, framework="torch")]  # T=19's PyTorch twin
    plan.scaled = ["everything is tiny (test)"]
    return plan


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setattr(report.plan, "make_plan", tiny_plan)


def _log(text):
    """The report's closing list of what it ran, reused or resumed."""
    return [line[2:] for line in text.split("## How this report was made")[1].splitlines() if line.startswith("- ")]


def _figures(text):
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)


@pytest.mark.slow
def test_report_writes_every_figure_and_reuses_runs(tiny, tmp_path, capsys):
    path = report.run_report(True, tmp_path, data="synthetic:256", progress=False)
    text = path.read_text()
    assert "QUICK run" in text and "everything is tiny" in text
    assert "*(missing figure" not in text
    figs = _figures(text)
    assert len(figs) >= 3 * 5 + 2 * 3 + 4 + 1  # toy (overlay, 2 curves, 2 boundaries) x3, cifar x2, rnn, data sets
    for rel in figs:
        assert (tmp_path / rel).stat().st_size > 1000, rel
    for heading in ("Part 1, Tasks 1-2", "Part 1, Task 3", "Part 3", "The original's results and ours"):
        assert heading in text
    assert "Part 3: sweep" in text and "T=3" in text and "lstm" in text
    assert "| what | original reported | ours | match? |" in text and "not comparable: scaled down (quick)" in text
    assert "Test accuracy per class:" in text and "| mlp-cifar/plain-fp32-s0 | " in text
    # The schedule ablation: its own run folders and sweep, and a StepLR-vs-constant row per length.
    assert "The schedule question" in text and (tmp_path / "rnn-sweep-lrgamma1" / "sweep.json").exists()
    assert (tmp_path / "rnn-palindrome" / "T5-vanilla-fp32-lrgamma1-s0" / "summary.json").exists()
    assert re.search(r"\| 5 \| [\d.]+% ± [\d.]+ \(min [\d.]+%\) \| [\d.]+% ± ", text)
    # Every original figure number the plan covers maps to one of ours that exists.
    fig_map = text.split("## The original's figures and ours")[1].split("## How this report")[0]
    for number in ("| 1 |", "| 2, 4 |", "| 18, 20 |", "| 6, 7 |", "| 10, 11 |", "| 12 |"):
        assert number in fig_map, number
    assert "*(missing" not in fig_map
    assert "[T=5, all seeds](rnn-sweep/T5-vanilla-curves.png)" in fig_map
    for rel in re.findall(r"\]\(([^)]+)\)", fig_map):
        assert (tmp_path / rel).exists(), rel
    assert _log(text) and all(x.startswith("ran ") for x in _log(text))
    # Cross-framework: moons in three frameworks (three pairs), T=19 against its PyTorch twin.
    cross = text.split("## Cross-framework: JAX vs PyTorch (vs NumPy)")[1].split("## The original's results")[0]
    assert "### Part 1, Tasks 1-2 (toy MLP): moons" in cross and "### Part 3 (vanilla RNN, T=19)" in cross
    assert "circles" not in cross
    pairs = re.findall(r"^\| (numpy|jax|torch) \| (numpy|jax|torch) \| ([\d.e+-]+) \|", cross, re.M)
    assert [p[:2] for p in pairs] == [("numpy", "jax"), ("numpy", "torch"), ("jax", "torch"), ("jax", "torch")]
    # float32, two implementations (run_bound, margin 2): the toy's 60 steps of batch sums over 30; T=19's
    # 2 epochs of 7 steps, whose gradients sum 64 sequences x 19 time steps.
    toy, t19 = run_bound(U32, n=30, steps=60, margin=2), run_bound(U32, n=64 * 19, steps=14, margin=2)
    assert all(float(p[2]) <= (t19 if i == 3 else toy) for i, p in enumerate(pairs))
    assert re.search(r"^\| torch \| [\d,]+ \| [\d.]+ \| [\d.]+ \| [\d.]+% \|$", cross, re.M)
    assert "cross-framework/t19/curves.png" in cross and "mlp-toy/moons-compare-s0/curves.png" in cross

    mtimes = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("summary.json")}
    again = report.run_report(True, tmp_path, data="synthetic:256", progress=False).read_text()
    assert _log(again) and all(x.startswith("reused ") for x in _log(again))
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("summary.json")} == mtimes

    # --force retrains a finished run instead of reading it back.
    cfg = tiny_plan(True, "", 0).cifar[0]
    log = []
    report._run_or_reuse(cifar.train_and_evaluate, cfg, tmp_path / cfg.experiment, cfg.run_name, force=True,
                         progress=False, log=log)
    assert log == [f"ran {tmp_path / cfg.experiment / cfg.run_name}"]
    assert (tmp_path / cfg.experiment / cfg.run_name / "summary.json").stat().st_mtime_ns > mtimes[
        tmp_path / cfg.experiment / cfg.run_name / "summary.json"]


@pytest.mark.slow
def test_report_resumes_an_interrupted_run(tiny, tmp_path):
    plan = tiny_plan(True, "synthetic:256", 0)
    cfg = plan.cifar[0]
    # A run that stopped after its first epoch: checkpoint 1 exists, no summary.
    cifar.train_and_evaluate(cfg, tmp_path / cfg.experiment, progress=False)
    run = tmp_path / cfg.experiment / cfg.run_name
    (run / "summary.json").unlink()
    import shutil
    shutil.rmtree(run / "checkpoints" / "2")
    text = report.run_report(True, tmp_path, data="synthetic:256", progress=False,
                             parts=report.parse_parts("mlp")).read_text()
    assert f"resumed {run}" in text
    assert (run / "summary.json").exists()


@pytest.mark.slow
def test_report_parts_leave_the_rest_out(tiny, tmp_path):
    text = report.run_report(True, tmp_path, data="synthetic:256", progress=False,
                             parts=report.parse_parts("toy,t19,mlp,torch", "mlp")).read_text()
    assert "**left out**: mlp, cnn, sweep, lstm, schedule" in text
    assert "| 8, 9 | CNN: accuracy, loss | left out of this report" in text
    assert "**Part 2 (the CNN) is not in this report**" in text
    assert "Part 1, Tasks 1-2" in text and "## Part 3" in text and "Part 1, Task 3" not in text
    assert "Part 3: sweep" not in text and "*(missing figure" not in text
    assert not (tmp_path / "mlp-cifar").exists() and not (tmp_path / "rnn-sweep").exists()
    assert len(_log(text)) == 5  # three toy sets, T=19 and its PyTorch twin


def test_report_without_torch_says_so(monkeypatch, tmp_path):
    monkeypatch.setattr(report.frameworks, "torch_available", lambda: False)
    text = "\n".join(report.frameworks.section(report.Plan(quick=True), {"toy": {}, "frameworks": {}}, tmp_path))
    assert "**PyTorch is not installed here**" in text and "pip install '.[torch]'" in text


@pytest.mark.parametrize("parts, skip, message", [
    ("toy,gan", None, "unknown report part(s) gan; choose from toy, mlp, cnn, t19, sweep, lstm, schedule, torch"),
    ("toy", "toy", "--parts/--skip leave no part to run"),
])
def test_report_parts_bad_input(parts, skip, message):
    with pytest.raises(report.UsageError, match=re.escape(message)):
        report.parse_parts(parts, skip)
