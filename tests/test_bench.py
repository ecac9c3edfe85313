"""``python -m train bench``: the timing helpers, the output contract, and PyTorch being optional.

No assertion here depends on how fast anything ran beyond being positive: the
machine is shared, so timings are noisy.
"""

import argparse
import builtins
import json
import statistics
import sys

import pytest

from train import bench

REQUIRED = ("suite", "framework", "mode", "precision", "devices", "batch_size", "compile_s", "step_s",
            "examples_per_s")


class FakeClock:
    """A clock the workload advances by a known amount per call: timings become exact."""

    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_time_windows_median_of_windows_and_first_call():
    clock = FakeClock()
    durations = iter([5.0, 1.0, 3.0, 2.0, 10.0, 4.0])  # first call (warm-up), then 5 timed windows

    def fn():
        clock.t += next(durations)

    out = []
    first, median = bench.time_windows(fn, 5, steps_per_window=2, warmup=1, clock=clock, out=out)
    assert first == 5.0
    assert out == [0.5, 1.5, 1.0, 5.0, 2.0]          # per-step: window time / steps
    assert median == statistics.median(out) == 1.5   # the 10 s outlier window does not move it


def test_time_windows_without_warmup_counts_the_first_window():
    clock = FakeClock()
    durations = iter([4.0, 2.0, 6.0])

    def fn():
        clock.t += next(durations)

    out = []
    first, median = bench.time_windows(fn, 3, warmup=0, clock=clock, out=out)
    assert first == 4.0 and out == [4.0, 2.0, 6.0] and median == 4.0


def test_time_windows_real_clock_is_positive():
    calls = []
    first, median = bench.time_windows(lambda: calls.append(sum(range(1000))), 3, steps_per_window=4, warmup=2)
    assert len(calls) == 5
    assert first > 0 and median > 0


def test_time_interleaved_runs_round_robin_with_per_function_steps():
    order = []
    clock = FakeClock()

    def make(name, d):
        def fn():
            order.append(name)
            clock.t += d
        return fn

    res = bench.time_interleaved([make("a", 1.0), make("b", 4.0)], 2, steps_per_window=[1, 2], warmup=1, clock=clock)
    assert order == ["a", "b", "a", "b", "a", "b"]
    assert res == [(1.0, [1.0, 1.0]), (4.0, [2.0, 2.0])]
    with pytest.raises(ValueError):
        bench.time_interleaved([make("a", 1.0)], 0)
    with pytest.raises(ValueError):
        bench.time_interleaved([make("a", 1.0)], 1, steps_per_window=[1, 2])


def test_paired_ratio_pairs_rounds():
    base = bench.Record("s", "numpy", "step", window_step_s=[2.0, 8.0, 2.0], step_s=2.0)
    fast = bench.Record("s", "jax", "fused", window_step_s=[1.0, 2.0, 1.0], step_s=1.0)
    # Round 2 was slow for both (machine load): pairing by round sees 2x, 4x, 2x -> 2x.
    assert bench.paired_ratio(base, fast) == 2.0


def _run(argv):
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command")
    bench.add_parser(sub)
    args = p.parse_args(["bench", *argv])
    return args.func(args)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    rc = _run(["--suite", "toy", "--frameworks", "numpy,jax", "--steps", "5", "--windows", "2", "--warmup", "1",
               "--modes", "step,step-loop,fused,pmap", "--out", str(out)])
    return rc, out / "bench"


def test_tiny_bench_writes_json_table_and_chart(tiny_run):
    rc, d = tiny_run
    assert rc == 0
    doc = json.loads((d / "bench.json").read_text())
    assert {"machine", "versions", "records"} <= set(doc)
    assert doc["machine"]["platform"] and doc["versions"]["jax"]
    modes = {(r["framework"], r["mode"]) for r in doc["records"]}
    assert {("numpy", "step"), ("jax", "step-loop"), ("jax", "fused"), ("jax", "pmap")} <= modes
    for r in doc["records"]:
        assert set(REQUIRED) <= set(r)
        assert r["suite"] == "toy" and r["framework"] in ("numpy", "jax") and r["batch_size"] == 30
        assert not r["skipped"], r["note"]
        assert r["step_s"] > 0 and r["examples_per_s"] > 0 and r["compile_s"] >= 0
        assert len(r["window_step_s"]) == r["windows"] == 2
        assert r["step_s"] == pytest.approx(statistics.median(r["window_step_s"]))
        assert r["examples_per_s"] == pytest.approx(30 / r["step_s"])
    pm = next(r for r in doc["records"] if r["mode"] == "pmap")
    assert pm["devices"] == 1 and pm["extra"]["pmap_vs_jit"] > 0
    assert doc["ratios"]["toy/fp32"]["pmap_vs_jit"] > 0
    jf = next(r for r in doc["records"] if r["mode"] == "fused")
    assert {"trace_s", "lower_s", "xla_compile_s"} <= set(jf["extra"])
    table = (d / "bench.md").read_text()
    assert "| suite | framework | mode |" in table and "| toy | jax | fused |" in table
    assert (d / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_devices_beyond_local_are_skipped_with_a_note(tmp_path):
    rc = _run(["--suite", "toy", "--frameworks", "jax", "--steps", "2", "--windows", "1", "--warmup", "0",
               "--modes", "pmap", "--devices", "64", "--out", str(tmp_path)])
    assert rc == 0
    (rec,) = json.loads((tmp_path / "bench" / "bench.json").read_text())["records"]
    assert rec["skipped"] and "xla_force_host_platform_device_count" in rec["note"]


def test_torch_missing_is_skipped_cleanly(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("No module named 'torch'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    for mod in [m for m in sys.modules if m == "torch" or m.startswith("torch.")]:
        monkeypatch.delitem(sys.modules, mod)
    assert bench.import_torch() is None
    rc = _run(["--suite", "toy", "--frameworks", "torch", "--steps", "2", "--windows", "1",
               "--out", str(tmp_path)])
    assert rc == 0
    doc = json.loads((tmp_path / "bench" / "bench.json").read_text())
    assert doc["settings"]["torch_available"] is False
    recs = [r for r in doc["records"] if r["framework"] == "torch"]
    assert {r["mode"] for r in recs} == {"eager", "compiled"}
    assert all(r["skipped"] and "not installed" in r["note"] for r in recs)
    assert "skipped" in (tmp_path / "bench" / "bench.md").read_text()


def test_whole_run_child_runs_the_project_path():
    r = bench.whole_run("jax", None, steps=60)
    assert r["steps"] == 60 and r["total_s"] > 0 and r["build_s"] >= 0 and r["run_s"] > 0
    assert r["programs_compiled"] >= 1 and r["backend_compile_s"] > 0
    assert 0 <= r["final_test_accuracy"] <= 1


def test_bad_input_is_a_usage_error(tmp_path):
    with pytest.raises(bench.UsageError):
        _run(["--suite", "toy", "--steps", "0", "--out", str(tmp_path)])
    with pytest.raises(SystemExit):
        _run(["--suite", "nope"])
