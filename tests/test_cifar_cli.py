"""End to end on synthetic CIFAR-shaped data (fast); loading the shared real copy is tested in test_cifar10_folder.py."""

import json

import pytest

from train.engine.results import read_jsonl


def _check_run(run, epochs):
    for name in ("config.json", "metrics.jsonl", "summary.json", "curves.png", "confusion.png", "misclassified.png"):
        assert (run / name).stat().st_size > 0, name
    rows = read_jsonl(run / "metrics.jsonl")
    assert [r["epoch"] for r in rows if r["split"] == "test"] == list(range(1, epochs + 1))
    return json.loads((run / "summary.json").read_text()), rows


def test_mlp_cifar_improved_synthetic(cli_fast, tmp_path):
    r = cli_fast("mlp-cifar", "--variant", "improved", "--data", "synthetic:1024", "--epochs", "2", "--batch-size", "128",
            "--out", tmp_path, "--no-progress")
    assert r.returncode == 0, r.stderr
    s, rows = _check_run(tmp_path / "mlp-cifar" / "improved-fp32-s0", 2)
    sizes = [3072, 1024, 512, 256, 256, 128, 10]
    linear = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    assert linear == 3_902_858
    assert s["param_count"] == linear + 2 * sum(sizes[1:-1])  # plus batch-norm scale and bias
    assert s["final"]["test_accuracy"] > 0.5  # synthetic classes are separable; chance is 0.1
    cfg = json.loads((tmp_path / "mlp-cifar" / "improved-fp32-s0" / "config.json").read_text())
    assert cfg["config"]["lr"] == 1e-3 and cfg["precision"] == "fp32"


@pytest.mark.slow
def test_cnn_cifar_tiny(cli_fast, tmp_path):
    r = cli_fast("cnn-cifar", "--data", "synthetic:64", "--epochs", "1", "--batch-size", "16", "--limit-test", "16",
            "--eval-batch", "16", "--out", tmp_path, "--no-progress")
    assert r.returncode == 0, r.stderr
    s, _ = _check_run(tmp_path / "cnn-cifar" / "cnn-fp32-s0", 1)
    assert s["param_count"] == 9_231_114 and s["steps"] == 4
