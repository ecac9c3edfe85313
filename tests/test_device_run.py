"""scripts/device_run.sh STAGE --dry-run: each GPU stage at tiny sizes on this machine, so the script cannot rot."""

import json
import os
import subprocess
import sys
import tarfile

import pytest

from conftest import ROOT


def _dry_run(stage, out):
    """One stage of scripts/device_run.sh at tiny sizes on this machine; the tar it writes."""
    env = {**os.environ, "PYTHON": sys.executable, "JAX_PLATFORMS": "cpu"}
    p = subprocess.run(["bash", str(ROOT / "scripts" / "device_run.sh"), stage, "--dry-run", str(out)], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert sorted(os.listdir(out)) == [f"{stage}.tar.gz"]
    return out / f"{stage}.tar.gz"


# The two stages are two tests, so two workers run them side by side.
@pytest.mark.slow(longest=True)
def test_device_run_check_dry_run(tmp_path):
    _dry_run("check", tmp_path)
    with tarfile.open(tmp_path / "check.tar.gz") as t:
        names = {n.removeprefix("./") for n in t.getnames()}
        bench = json.load(t.extractfile("./bench/bench.json"))
        log = t.extractfile("./check.log").read().decode()
        failed = t.extractfile("./failed.txt").read().decode().strip()
    assert {"bench/bench.md", "bench/bench.json"} <= names
    assert any(r["framework"] == "jax" and r.get("examples_per_s") for r in bench["records"])
    # The CNN's rows carry FLOPs and utilisation (MFU), PyTorch's with the JAX program's count.
    cnn = [r for r in bench["records"] if r["suite"] == "cnn-cifar" and not r["skipped"]]
    assert {r["framework"] for r in cnn if r["utilisation"]} == {"jax", "torch"} & {r["framework"] for r in cnn}
    assert all(r["flops_per_step"] == cnn[0]["flops_per_step"] for r in cnn)
    assert '"versions"' in log and "== tests: exit 0" in log and " passed" in log
    assert failed == ""


@pytest.mark.slow(longest=True)
def test_device_run_report_dry_run(tmp_path):
    _dry_run("report", tmp_path)
    with tarfile.open(tmp_path / "report.tar.gz") as t:
        names = {n.removeprefix("./") for n in t.getnames()}
        report = t.extractfile("./results/REPORT.md").read().decode()
    assert not any("checkpoints" in n for n in names)
    assert "## Part 1, Tasks 1-2" in report and "## Part 3" in report and "**left out**: cnn, sweep, lstm, schedule, torch" in report
    assert "results/mlp-cifar/plain-fp32-s0/summary.json" in names
