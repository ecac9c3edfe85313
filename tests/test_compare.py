"""``python -m train compare``: any finished runs side by side, and how far apart they are."""

import json

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
