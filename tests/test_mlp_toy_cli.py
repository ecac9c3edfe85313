"""End to end: python -m train mlp-toy, its results contract and the NumPy/JAX agreement."""

import json

from tolerances import U32, U64, run_bound
from train.engine.results import read_jsonl


def test_both_frameworks_agree_and_write_the_contract(cli_fast, tmp_path):
    r = cli_fast("mlp-toy", "--dataset", "circles", "--framework", "both", "--steps", "300", "--out", tmp_path, "--no-progress")
    assert r.returncode == 0, r.stderr
    root = tmp_path / "mlp-toy"
    rows = {}
    for fw in ("numpy", "jax"):
        run = root / f"circles-{fw}-s0"
        for name in ("config.json", "metrics.jsonl", "summary.json", "curves.png", "decision_boundary.png"):
            assert (run / name).stat().st_size > 0, name
        cfg = json.loads((run / "config.json").read_text())
        assert cfg["config"]["lr"] == 0.01 and cfg["config"]["batch_size"] == 30 and cfg["config"]["seed"] == 0
        assert "jax" in cfg["versions"] and "numpy" in cfg["versions"]
        rows[fw] = read_jsonl(run / "metrics.jsonl")
        assert len(rows[fw]) == 2 * (300 // 30)
        assert {"step", "split", "loss", "accuracy", "time_s"} <= set(rows[fw][0])
        s = json.loads((run / "summary.json").read_text())
        for key in ("experiment", "framework", "final", "best_test_accuracy", "wall_time_s", "compile_time_s",
                    "examples_per_s", "param_count", "devices", "platform"):
            assert key in s, key
        assert s["param_count"] == 2 * 20 + 20 + 20 * 2 + 2
        assert set(s["final"]) == {"train_loss", "train_accuracy", "test_loss", "test_accuracy"}
    # float32, NumPy's and XLA's kernels: each of the 300 steps' widest sums (the batch of 30) in each run's
    # own order (run_bound, margin 2). The float64 twin below checks the same code to 1e-11.
    bound = run_bound(U32, n=30, steps=300, margin=2)
    for a, b in zip(rows["numpy"], rows["jax"]):
        assert (a["step"], a["split"]) == (b["step"], b["split"])
        assert abs(a["loss"] - b["loss"]) <= bound
    (cmp,) = json.loads((root / "circles-compare-s0" / "compare.json").read_text())["pairs"]
    # The accuracy is discrete: 0.01 is 2 of the 200 test points, ones whose logit margin is within the gap.
    assert cmp["max_abs_loss_diff"] <= bound and abs(cmp["final_test_accuracy_diff"]) <= 0.01
    assert (root / "circles-compare-s0" / "curves.png").exists()
    assert (root / "circles-data-s0.png").exists()
    assert "test acc" in r.stdout


def test_float64_runs_agree_to_rounding(cli_fast, tmp_path):
    r = cli_fast("mlp-toy", "--dataset", "moons", "--steps", "120", "--dtype", "float64", "--out", tmp_path, "--no-progress")
    assert r.returncode == 0, r.stderr
    (cmp,) = json.loads((tmp_path / "mlp-toy" / "moons-compare-s0" / "compare.json").read_text())["pairs"]
    assert cmp["max_abs_loss_diff"] <= run_bound(U64, n=30, steps=120)  # float64: batch sums of 30, 120 steps


def test_same_seed_same_metrics(cli, cli_fast, tmp_path):
    for sub, run_cli in (("a", cli), ("b", cli_fast)):  # two processes: nothing rides on process state
        r = run_cli("mlp-toy", "--dataset", "blobs", "--framework", "jax", "--steps", "90", "--out", tmp_path / sub, "--no-progress")
        assert r.returncode == 0, r.stderr
    strip = lambda rows: [{k: v for k, v in x.items() if k != "time_s"} for x in rows]  # noqa: E731
    a = strip(read_jsonl(tmp_path / "a/mlp-toy/blobs-jax-s0/metrics.jsonl"))
    b = strip(read_jsonl(tmp_path / "b/mlp-toy/blobs-jax-s0/metrics.jsonl"))
    assert a == b
