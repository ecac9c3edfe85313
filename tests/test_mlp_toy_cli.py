"""End to end: python -m train mlp-toy, its results contract and the NumPy/JAX agreement."""

import json


from train.results import read_jsonl


def test_both_frameworks_agree_and_write_the_contract(cli, tmp_path):
    r = cli("mlp-toy", "--dataset", "circles", "--framework", "both", "--steps", "300", "--out", tmp_path, "--no-progress")
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
    for a, b in zip(rows["numpy"], rows["jax"]):
        assert (a["step"], a["split"]) == (b["step"], b["split"])
        assert abs(a["loss"] - b["loss"]) <= 1e-3
    cmp = json.loads((root / "circles-compare-s0" / "comparison.json").read_text())
    assert cmp["max_abs_loss_diff"] <= 1e-3 and cmp["final_test_accuracy_diff"] <= 0.01
    assert (root / "circles-compare-s0" / "curves_overlay.png").exists()
    assert (root / "circles-data-s0.png").exists()
    assert "test acc" in r.stdout


def test_float64_runs_agree_to_rounding(cli, tmp_path):
    r = cli("mlp-toy", "--dataset", "moons", "--steps", "120", "--dtype", "float64", "--out", tmp_path, "--no-progress")
    assert r.returncode == 0, r.stderr
    cmp = json.loads((tmp_path / "mlp-toy" / "moons-compare-s0" / "comparison.json").read_text())
    assert cmp["max_abs_loss_diff"] <= 1e-10


def test_same_seed_same_metrics(cli, cli_fast, tmp_path):
    for sub, run_cli in (("a", cli), ("b", cli_fast)):  # two processes: nothing rides on process state
        r = run_cli("mlp-toy", "--dataset", "blobs", "--framework", "jax", "--steps", "90", "--out", tmp_path / sub, "--no-progress")
        assert r.returncode == 0, r.stderr
    strip = lambda rows: [{k: v for k, v in x.items() if k != "time_s"} for x in rows]  # noqa: E731
    a = strip(read_jsonl(tmp_path / "a/mlp-toy/blobs-jax-s0/metrics.jsonl"))
    b = strip(read_jsonl(tmp_path / "b/mlp-toy/blobs-jax-s0/metrics.jsonl"))
    assert a == b
