"""``python -m train compare``: any finished runs side by side, and how far apart they are."""

import json

import numpy as np
import pytest

from train.analysis import compare


@pytest.fixture(scope="module")
def toy_runs(tmp_path_factory):
    from conftest import run_cli_in_process

    out = tmp_path_factory.mktemp("runs")
    r = run_cli_in_process("mlp-toy", "--dataset", "moons", "--steps", "120", "--out", out, "--no-progress")
    assert r.returncode == 0, r.stderr
    return out / "mlp-toy"


def test_compare_numpy_and_jax_matches_the_experiment_own_comparison(toy_runs, tmp_path, cli_fast):
    r = cli_fast("compare", str(toy_runs / "moons-*"), "--out", tmp_path)  # the glob skips the compare folder
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "compare.json").read_text())
    (own,) = json.loads((toy_runs / "moons-compare-s0" / "compare.json").read_text())["pairs"]
    (pair,) = doc["pairs"]
    assert {pair["a"], pair["b"]} == {"mlp-toy/moons-jax-s0", "mlp-toy/moons-numpy-s0"}
    # The same differences, recomputed from the metrics files as written (JSON keeps every digit of a float).
    assert pair["max_abs_loss_diff"] == own["max_abs_loss_diff"]
    assert pair["evaluations_compared"] == own["evaluations_compared"] == 2 * 120 // 30  # train and test, 4 times
    assert pair["final_test_accuracy_diff"] == 0.0 and pair["examples_per_s_ratio"] > 0
    assert (tmp_path / "curves.png").stat().st_size > 1000
    md = (tmp_path / "compare.md").read_text()
    assert "| mlp-toy/moons-jax-s0 | mlp-toy/moons-numpy-s0 | 8 |" in md


def test_pair_differences_on_made_up_runs():
    def run(label, losses, accs, eps):
        rows = [{"step": i, "split": "test", "loss": l, "accuracy": a} for i, (l, a) in enumerate(zip(losses, accs))]
        return {"label": label, "rows": rows, "summary": {"final": {"test_accuracy": accs[-1]},
                                                          "best_test_accuracy": max(accs), "examples_per_s": eps,
                                                          "compile_time_s": 2.0}}
    p = compare.compare_pair(run("a", [1.0, 0.5, 0.4], [0.5, 0.7, 0.8], 100.0),
                             run("b", [1.0, 0.75, 0.3], [0.5, 0.6, 0.9], 300.0))
    assert p["max_abs_loss_diff"] == 0.25 and p["evaluations_compared"] == 3
    # Made-up figures: 0.9 - 0.8 is 0.1 but for float rounding.
    assert p["final_test_accuracy_diff"] == pytest.approx(0.1) and p["examples_per_s_ratio"] == 3.0
    assert p["compile_time_ratio"] == 1.0


@pytest.mark.parametrize("args, message", [
    (["/nowhere/run"], "compare needs at least two run folders, got 1"),
    (["/nowhere/a", "/nowhere/b"], "/nowhere/a is not a finished run folder"),
    (["/nowhere/*"], "no finished run folder matches '/nowhere/*'"),
])
def test_bad_input_is_one_line(cli_fast, tmp_path, args, message):
    r = cli_fast("compare", *args, "--out", tmp_path / "cmp")
    assert r.returncode == 2 and r.stderr.startswith(f"error: {message}"), r.stderr
    assert not (tmp_path / "cmp").exists()


# ---- compare --by: groups of runs, intervals and verdicts ----

@pytest.fixture(scope="module")
def seeded_toy_runs(tmp_path_factory):
    """NumPy and JAX twins of the toy MLP for seeds 0, 1, 2 (same weights and batches per seed)."""
    from conftest import run_cli_in_process

    out = tmp_path_factory.mktemp("seeded")
    for seed in range(3):
        r = run_cli_in_process("mlp-toy", "--dataset", "moons", "--steps", "60", "--seed", seed, "--out", out,
                               "--no-progress")
        assert r.returncode == 0, r.stderr
    return out / "mlp-toy"


def test_by_framework_pairs_the_twins_and_gives_intervals_and_a_verdict(seeded_toy_runs, tmp_path, cli_fast):
    from scipy import stats as sp

    r = cli_fast("compare", str(seeded_toy_runs / "moons-*-s*"), "--by", "framework", "--margin", "1.0",
                 "--out", tmp_path)
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "compare.json").read_text())
    g = doc["grouped"]
    assert g["by"] == "framework" and g["margin"] == 1.0
    assert [(x["name"], len(x["runs"]), x["seeds"]) for x in g["groups"]] == [("jax", 3, [0, 1, 2]),
                                                                             ("numpy", 3, [0, 1, 2])]
    for grp in g["groups"]:   # the interval over the summaries' own figures, by scipy directly
        acc = [100 * json.loads((seeded_toy_runs / f"moons-{grp['name']}-s{s}" / "summary.json").read_text())
               ["final"]["test_accuracy"] for s in range(3)]
        d = grp["metrics"]["final_test_accuracy"]
        lo, hi = sp.t.interval(0.95, 2, loc=np.mean(acc), scale=sp.sem(acc))
        assert d["n"] == 3 and d["ci"] == pytest.approx([lo, hi], rel=1e-12) and d["std"] > 0
    (c,) = g["comparisons"]
    assert c["paired"] and c["pairing"].startswith("paired t-test: both groups ran seeds 0, 1, 2")
    acc = c["metrics"]["final_test_accuracy"]
    # Twins classify the 200 test points alike: every pair's difference is exactly 0.
    assert (acc["n_a"], acc["n_b"], acc["diff"], acc["verdict"]) == (3, 3, 0.0, "equivalent")
    speed = c["metrics"]["examples_per_s"]
    assert speed["test"] == "paired t" and speed["margin"] == pytest.approx(
        0.1 * (g["groups"][0]["metrics"]["examples_per_s"]["mean"] + g["groups"][1]["metrics"]["examples_per_s"]["mean"]) / 2)
    # The exact comparison of each twin pair: what the experiment itself measured for that seed.
    assert len(doc["pairs"]) == 3
    for p in doc["pairs"]:
        seed = p["a"][-1]
        (own,) = json.loads((seeded_toy_runs / f"moons-compare-s{seed}" / "compare.json").read_text())["pairs"]
        assert p["b"].endswith(f"-s{seed}") and p["max_abs_loss_diff"] == own["max_abs_loss_diff"]
    md = (tmp_path / "compare.md").read_text()
    assert "# Runs compared by framework" in md and "| final test accuracy (%) | jax | 3 |" in md
    assert "- final test accuracy: equivalent: +0.00 points" in md and "n = 3 vs 3" in md
    for png in ("groups.png", "group_curves.png", "curves.png"):
        assert (tmp_path / png).stat().st_size > 1000
    assert "final test accuracy, numpy minus jax: equivalent" in r.stdout


def fake_run(root, name: str, *, lr: float, seed: int, accs: list[float]):
    """A finished run folder as an experiment writes it (config.json, summary.json, metrics.jsonl)."""
    d = root / "exp" / name
    d.mkdir(parents=True)
    rows = [{"step": i + 1, "epoch": i + 1, "split": "test", "loss": 1 - a, "accuracy": a} for i, a in enumerate(accs)]
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / "config.json").write_text(json.dumps({"experiment": "exp", "framework": "jax",
                                               "config": {"lr": lr, "seed": seed, "epochs": len(accs)}}))
    (d / "summary.json").write_text(json.dumps({
        "experiment": "exp", "framework": "jax", "final": {"test_accuracy": accs[-1], "test_loss": 1 - accs[-1]},
        "best_test_accuracy": max(accs), "examples_per_s": 1000.0 + seed, "wall_time_s": 10.0 + seed}))
    return d


def test_by_lr_on_made_up_runs_is_welch_and_different(tmp_path, cli_fast):
    """Two learning rates 5 points apart (noise 0.5 points), seeds 0-3 and 10-13: not twins, so
    Welch's test; the 5-point gap at t ~ 14 is "different"."""
    rng = np.random.default_rng(0)
    for i in range(4):
        fake_run(tmp_path, f"lr1-s{i}", lr=0.1, seed=i, accs=[0.5, 0.80 + 0.005 * rng.normal()])
        fake_run(tmp_path, f"lr2-s{i}", lr=0.01, seed=10 + i, accs=[0.5, 0.85 + 0.005 * rng.normal()])
    r = cli_fast("compare", str(tmp_path / "exp" / "lr*"), "--by", "lr", "--margin", "1", "--out", tmp_path / "c")
    assert r.returncode == 0, r.stderr
    g = json.loads((tmp_path / "c" / "compare.json").read_text())["grouped"]
    assert [(x["value"], len(x["runs"])) for x in g["groups"]] == [(0.1, 4), (0.01, 4)]
    (c,) = g["comparisons"]
    acc = c["metrics"]["final_test_accuracy"]
    assert not c["paired"] and acc["test"] == "Welch t" and acc["verdict"] == "different"
    assert 4 < acc["ci"][0] < acc["diff"] < acc["ci"][1] < 6
    assert c["metrics"]["lowest_test_loss_at"]["verdict"] == "equivalent"   # epoch 2 in every run: exact
    assert json.loads((tmp_path / "c" / "compare.json").read_text())["pairs"] == []   # no twins


@pytest.mark.parametrize("args, message", [
    (["--by", "framework", "--margin", "0"], "--margin must be a positive number, got 0"),
    (["--by", "framework", "--margin", "-1"], "--margin must be a positive number, got -1"),
    (["--by", "framework", "--margin", "nan"], "--margin must be a positive number, got nan"),
    (["--margin", "1"], "--margin judges groups of runs: give --by"),
    (["--by", "nosuch"], "--by nosuch: "),
    (["--by", "framework"], "--by framework: every run has framework = jax; there is nothing to compare"),
])
def test_bad_grouping_is_one_line_and_writes_nothing(tmp_path, cli_fast, args, message):
    for i in range(2):
        fake_run(tmp_path, f"r-s{i}", lr=0.1, seed=i, accs=[0.5, 0.8])
    r = cli_fast("compare", str(tmp_path / "exp" / "r-s*"), *args, "--out", tmp_path / "cmp")
    assert r.returncode == 2 and r.stderr.startswith(f"error: {message}") and r.stderr.count("\n") == 1, r.stderr
    assert not (tmp_path / "cmp").exists()


def test_seeds_trained_together_count_at_their_programs_speed():
    """K vmapped seeds share one program's time: each counts at K times its own examples/s and a K-th of the
    shared wall time, so a group of them compares fairly with seeds trained one after another."""
    from train.analysis import groups
    summary = {"final": {"test_accuracy": 0.5}, "best_test_accuracy": 0.6, "examples_per_s": 100.0,
               "wall_time_s": 30.0, "trained_together": 3}
    m = groups.metric_values({"summary": summary, "rows": []}, "epoch")
    assert (m["examples_per_s"], m["wall_time_s"]) == (300.0, 10.0)
    alone = groups.metric_values({"summary": {**summary, "trained_together": 1}, "rows": []}, "epoch")
    assert (alone["examples_per_s"], alone["wall_time_s"]) == (100.0, 30.0)
