"""The report: every experiment, REPORT.md with existing figures, reuse of finished runs, --force."""

import dataclasses
import re

import pytest

from tolerances import U32, run_bound
from train import report
from train.experiments import cifar, mlp_toy, rnn


def tiny_plan(quick, data, seed, seeds=3):
    # Two seeds of T=19 and of the MLPs: every seed-dependent verdict's machinery, at half the cost of three.
    plan = report.Plan(quick=True, torch=True, seeds=2, t19_seeds=2, mlp_seeds=2)
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
    plan.twins = [dataclasses.replace(c, framework="torch") for c in (plan.cifar[0], plan.rnn_t19)]
    plan.scaled = ["everything is tiny (test)"]
    return plan


def lean_plan(quick, data, seed, seeds=3):
    """tiny_plan with one seed of each run and the plain MLP only: for the tests of which parts run and of
    resuming, whose checks do not depend on how many seeds a part has (the figure map needs every toy set)."""
    plan = tiny_plan(quick, data, seed, seeds)
    plan.cifar = plan.cifar[:1]
    plan.seeds = plan.t19_seeds = plan.mlp_seeds = 1
    return plan


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setattr(report.plan, "make_plan", tiny_plan)


@pytest.fixture
def lean(monkeypatch):
    monkeypatch.setattr(report.plan, "make_plan", lean_plan)


def _log(text):
    """The report's closing list of what it ran, reused or resumed."""
    return [line[2:] for line in text.split("## How this report was made")[1].splitlines() if line.startswith("- ")]


def _figures(text):
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)


@pytest.mark.slow(longest=True)
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
    assert re.search(r"^\| 5 \| [\d.]+% ± – \(min [\d.]+%\) \| [\d.]+% ± – \(min [\d.]+%\) \| [+-][\d.]+ points "
                     r"\(n = 1 pairs: .*\) \| inconclusive \|$", text, re.M)
    # Every seed-dependent verdict states n, and an interval where there are two seeds or more.
    assert "**Seeds** (seed, seed + 1, ...; `--seeds 2`): T=19: 2; the CIFAR MLPs and their PyTorch twins: 2" in text
    assert "| T=19 vanilla seed 0 |" in text and "| T=19 vanilla seed 1 |" in text
    claims = text.split("## The original's results and ours")[1].split("## Where our runs")[0]
    rows = {r.split(" | ")[0][2:]: r for r in claims.splitlines() if r.startswith("| Part")}
    assert re.search(r"final test acc [\d.]+% \(n = 2, 95% CI [\d.]+% to [\d.]+%(, cut to 0-100%)?\)", rows["Part 3: T=19"])
    assert re.search(r"then up [\d.]+% \(n = 2, 95% CI", rows["Part 1 T3: CIFAR MLP"])
    assert re.search(r"T=3 [\d.]+% \(n = 1: no interval\); T=5 [\d.]+% \(n = 1: no interval\)", rows["Part 3: sweep"])
    assert re.search(r"\| (equivalent|different|inconclusive): [+-]?[\d.e-]+ points.*, n = 2 vs 2.*, margin ±1 points.*; n = 2 "
                     r"seed pairs \(a 2-seed verdict: fewer than 3 seeds\) \|$", rows["Part 1 T3: JAX vs PyTorch, plain MLP"])
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
    assert [p[:2] for p in pairs] == [("numpy", "jax"), ("numpy", "torch"), ("jax", "torch"), ("jax", "torch"),
                                      ("jax", "torch")]
    # float32, two implementations (run_bound, margin 2): the toy's 60 steps of batch sums over 30; T=19's
    # 2 epochs of 7 steps, whose gradients sum 64 sequences x 19 time steps. (The MLP pair: test_cross_framework.)
    toy, t19 = run_bound(U32, n=30, steps=60, margin=2), run_bound(U32, n=64 * 19, steps=14, margin=2)
    assert all(float(p[2]) <= toy for p in pairs[:3]) and float(pairs[4][2]) <= t19
    # The MLP's twins, every seed, and the paired verdict; T=19's one twin has no spread to test.
    mlp = cross.split("### Part 1, Task 3 (CIFAR MLP, plain)")[1].split("### Part 3")[0]
    assert re.findall(r"^\| (\d) \| [\d.]+% \| [\d.]+% \| [+-][\d.]+ points \| [\d.e+-]+ \|$", mlp, re.M) == ["0", "1"]
    assert "**Same final test accuracy?** (PyTorch minus JAX, paired by seed, margin ±1 point): " in mlp
    assert "n = 2 seed pairs" in mlp and "One seed pair (n = 1)" in cross.split("### Part 3")[1]
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
def test_report_resumes_an_interrupted_run(lean, tmp_path):
    plan = lean_plan(True, "synthetic:256", 0)
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
def test_report_parts_leave_the_rest_out(lean, tmp_path):
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


def test_report_seeds_below_one_is_a_usage_error(tmp_path):
    with pytest.raises(report.UsageError, match=re.escape("--seeds must be at least 1, got 0")):
        report.run_report(True, tmp_path / "out", data="synthetic:256", seeds=0)
    assert not (tmp_path / "out").exists()


def test_report_plan_seeds():
    """--seeds N: N seeds of T=19, of the MLPs and their twins, and of the sweeps in the full plan; the quick
    plan keeps one seed where a seed costs minutes, and says so."""
    full = report.make_plan(False, "synthetic:256", 5, seeds=4)
    mlp = [c for c in full.cifar if c.model == "mlp"]
    assert (full.t19_seeds, full.mlp_seeds, full.sweep["seeds"], full.ablation["seeds"]) == (4, 4, 4, 4)
    assert [c.run_name for c in report.plan.seed_runs(mlp[1], full.mlp_seeds)] == [
        f"improved-fp32-s{s}" for s in (5, 6, 7, 8)]
    assert [report.plan.seed_count(full, c) for c in full.cifar] == [4, 4, 1]  # the CNN: one seed
    if full.torch:  # both MLPs' twins, every seed; T=19's twin one seed
        assert [(c.run_name, report.plan.seed_count(full, c)) for c in full.twins] == [
            ("plain-fp32-torch-s5", 4), ("improved-fp32-torch-s5", 4), ("T19-vanilla-fp32-torch-s5", 1)]
    one = report.make_plan(False, "synthetic:256", 0, seeds=1)  # the sweeps keep the reference's 3 seeds
    assert (one.t19_seeds, one.mlp_seeds, one.sweep["seeds"], one.ablation["seeds"]) == (1, 1, 3, 3)
    quick = report.make_plan(True, "synthetic:256", 0)
    assert (quick.t19_seeds, quick.mlp_seeds, quick.sweep["seeds"]) == (3, 1, 1)
    assert any(s.startswith("Seeds: T=19 with 3;") for s in quick.scaled)


def test_report_seed_runs_are_the_cli_runs():
    """Seed k of a report run is the run `python -m train <experiment> --seed k` writes (the same config digest),
    so runs trained alone, e.g. the full reference's extra seeds and twins, are reused by the report."""
    from train.engine.results import run_config
    from train.experiments import registry
    data = "folder:/some/cifar10"
    full = report.make_plan(False, data, 0, seeds=3)
    mlp = [c for c in full.cifar if c.model == "mlp"]
    for base in mlp + [dataclasses.replace(c, framework="torch") for c in mlp]:
        for cfg in report.plan.seed_runs(base, 3):
            cli = registry.make_config(registry.get("mlp-cifar"), {"variant": cfg.variant, "framework": cfg.framework,
                                                                   "data": data, "seed": cfg.seed})
            assert (cli.run_name, run_config(cli)) == (cfg.run_name, run_config(cfg))
    for cfg in report.plan.seed_runs(full.rnn_t19, 3):
        cli = registry.make_config(registry.get("rnn-palindrome"), {"input_length": 19, "seed": cfg.seed})
        assert (cli.run_name, run_config(cli)) == (cfg.run_name, run_config(cfg))


@pytest.mark.parametrize("parts, skip, message", [
    ("toy,gan", None, "unknown report part(s) gan; choose from toy, mlp, cnn, t19, sweep, lstm, schedule, torch"),
    ("toy", "toy", "--parts/--skip leave no part to run"),
])
def test_report_parts_bad_input(parts, skip, message):
    with pytest.raises(report.UsageError, match=re.escape(message)):
        report.parse_parts(parts, skip)
