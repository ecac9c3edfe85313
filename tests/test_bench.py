"""``python -m train bench``: timing arithmetic on made-up windows, the JAX rows being the trainer's
own step, the output contract (bench.json schema, bench.md rows), the budget, PyTorch optional.

No assertion depends on how fast anything ran: the machine is shared, so timings are noisy.
"""

import argparse
import builtins
import dataclasses
import json
import statistics
import sys

import jax
import numpy as np
import pytest

from conftest import run_bench
from tolerances import U32, run_bound
from train.bench import report, timing, whole_run
from train.bench.jax_runner import Artifacts, build_trainer, jax_runner, jax_setup
from train.bench.records import Record, run_name, skipped
from train.bench.torch_runner import import_torch
from train.bench.workloads import make_workload
from train.experiments import cifar, mlp_toy
from train.errors import UsageError
from train.backends.jax_trainer import StepFns, Trainer, create_state

# bench.json's contract: what readers of old files rely on.
RECORD_FIELDS = ["suite", "framework", "mode", "precision", "devices", "batch_size", "compile_s",
                 "step_s", "examples_per_s", "steps_per_window", "windows", "window_step_s", "total_s",
                 "peak_memory_bytes", "skipped", "note", "settings", "extra",
                 # added with the work, memory and spread columns
                 "step_s_q1", "step_s_q3", "flops_per_step", "bytes_accessed_per_step", "flops_per_s",
                 "peak_flops_per_s", "utilisation", "memory"]
TOP_KEYS = {"machine", "versions", "settings", "records", "ratios", "batches", "checks", "wall_time_s", "curves",
            "partial"}
SETTINGS_KEYS = {"suites", "frameworks", "modes", "devices", "precisions", "quick", "seed", "batch_sizes",
                 "sweep_precision", "torch_compile", "torch_compile_mode", "time_budget_s", "profile",
                 "profile_only", "dump_hlo", "torch_available", "scaling", "pmap_child_devices", "compile_cache"}


class FakeClock:
    """A clock the workload advances by a known amount per call: timings become exact."""

    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def _windows(clock, durations):
    it = iter(durations)

    def fn():
        clock.t += next(it)
    return fn


# ------------------------------------------------------------------------------------------------
# Timing arithmetic
# ------------------------------------------------------------------------------------------------

def test_time_interleaved_runs_round_robin_with_per_function_steps():
    order, clock = [], FakeClock()

    def make(name, d):
        def fn():
            order.append(name)
            clock.t += d
        return fn

    res = timing.time_interleaved([make("a", 1.0), make("b", 4.0)], 2, steps_per_window=[1, 2], warmup=1,
                                  clock=clock)
    assert order == ["a", "b", "a", "b", "a", "b"]
    assert res == [(1.0, [1.0, 1.0]), (4.0, [2.0, 2.0])]
    # Without warm-up the first window is timed and is also the first call.
    clock = FakeClock()
    ((first, times),) = timing.time_interleaved([_windows(clock, [4.0, 2.0, 6.0])], 3, warmup=0, clock=clock)
    assert first == 4.0 and times == [4.0, 2.0, 6.0]
    for bad in ({"n_windows": 0}, {"n_windows": 1, "steps_per_window": [1, 2]}, {"n_windows": 1, "warmup": -1}):
        with pytest.raises(ValueError):
            timing.time_interleaved([make("a", 1.0)], **bad)


def test_finish_takes_the_median_window_and_its_throughput():
    clock = FakeClock()
    ((first, times),) = timing.time_interleaved([_windows(clock, [5.0, 1.0, 3.0, 2.0, 10.0, 4.0])], 5,
                                                steps_per_window=2, warmup=1, clock=clock)
    assert first == 5.0 and times == [0.5, 1.5, 1.0, 5.0, 2.0]
    rec = timing.finish(Record("mlp-toy", "jax", "fused", batch_size=30), times)
    # The 10 s outlier window does not move the median.
    assert (rec.step_s, rec.windows, rec.window_step_s) == (1.5, 5, times)
    assert rec.examples_per_s == 20.0


def test_paired_ratio_is_the_median_of_per_round_ratios():
    base = Record("s", "numpy", "step", window_step_s=[2.0, 8.0, 2.0], step_s=2.0)
    fast = Record("s", "jax", "fused", window_step_s=[1.0, 2.0, 1.0], step_s=1.0)
    # Round 2 was slow for both (machine load): pairing by round sees 2x, 4x, 2x -> 2x.
    assert timing.paired_ratio(base, fast) == 2.0
    # Per-round ratios 1, 4, 3 -> 3; the ratio of the medians would say 4 / 1.
    base = Record("s", "numpy", "step", window_step_s=[1.0, 4.0, 9.0], step_s=4.0)
    other = Record("s", "jax", "fused", window_step_s=[1.0, 1.0, 3.0], step_s=1.0)
    assert timing.paired_ratio(base, other) == 3.0
    # Unpaired (different window counts): the ratio of the medians.
    other.window_step_s = [1.0, 1.0]
    assert timing.paired_ratio(base, other) == 4.0


def _rec(suite, framework, mode, precision, batch, per_s=None, windows=None, devices=1, **extra):
    """A measured record with made-up windows (per-step seconds) or a constant throughput."""
    windows = windows or [batch / per_s] * 3
    return timing.finish(Record(suite, framework, mode, precision, devices, batch, extra=dict(extra)),
                         list(windows))


def test_ratios_of_made_up_windows():
    recs = [_rec("mlp-toy", "numpy", "step", "fp32", 30, windows=[10.0, 20.0, 10.0]),
            _rec("mlp-toy", "jax", "step-loop", "fp32", 30, windows=[20.0, 40.0, 20.0]),
            _rec("mlp-toy", "jax", "fused", "fp32", 30, windows=[1.0, 4.0, 2.0]),
            _rec("mlp-toy", "jax", "pmap", "fp32", 30, windows=[2.0, 4.0, 2.0]),
            _rec("mlp-toy", "jax", "pmap", "fp32", 30, windows=[1.0, 2.0, 2.0], devices=2),
            skipped("mlp-toy", "torch", "eager", "not installed", batch_size=30)]
    ratios = report.compute_ratios(recs, gpu=False)
    assert list(ratios) == ["mlp-toy/fp32/b30"]
    d = ratios["mlp-toy/fp32/b30"]
    assert d["baseline"] == "numpy step"
    assert d["speedup"] == {"numpy step d1": 1.0, "jax step-loop d1": 0.5, "jax fused d1": 5.0,
                            "jax pmap d1": 5.0, "jax pmap d2": 10.0}
    assert d["fused_vs_step_loop"] == 10.0              # rounds 20/1, 40/4, 20/2
    assert d["pmap_vs_jit"] == 1.0                      # rounds 1/2, 4/4, 2/2
    assert d["pmap_vs_jit_of_medians"] == 1.0           # 2/2
    assert d["pmap_scaling"] == {"2": 2.0}              # rounds 2/1, 4/2, 2/2
    assert [r.extra.get("speedup_vs_baseline") for r in recs] == [1.0, 0.5, 5.0, 5.0, 10.0, None]
    assert recs[3].extra["pmap_vs_jit"] == 1.0
    # The toy check: JAX fused over NumPy, paired.
    assert report.acceptance_checks(recs, gpu=False) == [
        {"check": "mlp-toy: JAX fused speed / NumPy", "value": 5.0, "target": ">= 5", "pass": True}]


def test_measure_drops_a_failing_runner_and_passes_skipped_records():
    calls, after = [], []

    def bad():
        raise ValueError("boom\nsecond line")

    ok = timing.Runner(Record("mlp-toy", "jax", "fused", batch_size=30, steps_per_window=3),
                       lambda: calls.append(1), after=lambda r: after.append(r.mode))
    failing = timing.Runner(Record("mlp-toy", "jax", "pmap", batch_size=30, steps_per_window=3), bad)
    left_out = skipped("mlp-toy", "torch", "eager", "not installed", batch_size=30)
    lines = []
    out = timing.measure([ok, left_out, failing], windows=3, warmup=1, log=lines.append)
    assert [r.mode for r in out] == ["fused", "eager", "pmap"] and len(lines) == 3
    assert len(calls) == 4 and after == ["fused"]
    assert out[0].windows == 3 and out[0].step_s > 0 and "first_window_s" in out[0].extra
    assert out[1] is left_out
    assert out[2].skipped and out[2].note == "failed: ValueError: boom" and out[2].batch_size == 30


def test_budget_and_failures_become_skipped_records():
    wl = argparse.Namespace(suite="rnn-palindrome", batch=128)
    assert timing.Budget(None).spent() == "" and timing.Budget(60.0).spent() == ""
    spent = timing.Budget(5.0, start=-1e9)
    assert "--time-budget 5 s was spent" in spent.spent()
    built = []
    rec = timing.prepare(lambda: built.append(1), wl, "jax", "fused", "bf16", budget=spent)
    assert built == [] and rec.skipped and "--time-budget" in rec.note
    assert (rec.suite, rec.framework, rec.mode, rec.precision, rec.batch_size) == ("rnn-palindrome", "jax", "fused", "bf16", 128)

    def broken():
        raise RuntimeError("no compiler")
    assert timing.prepare(broken, wl, "torch", "compile", "fp32").note == "failed: RuntimeError: no compiler"


# ------------------------------------------------------------------------------------------------
# The JAX rows are the trainer's step, with the experiments' models and optimizers
# ------------------------------------------------------------------------------------------------

def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_jax_modes_train_as_the_toy_experiment_does():
    """Every JAX mode is a Trainer built from what mlp_toy builds, and one window trains exactly as
    the toy experiment's own backend trains on the same batches."""
    wl = make_workload("mlp-toy", gpu=False, quick=True, seed=0, steps=4)
    setup = jax_setup(wl, "fp32")
    ref = mlp_toy.make_backend(wl.cfg, "jax", wl.data)
    assert setup.compiler_options == ref.trainer.compiler_options == {"xla_backend_optimization_level": 0}
    for a, b in zip(_leaves(setup.host_state), _leaves(ref.host_state())):
        np.testing.assert_array_equal(a, b)
    want = ref.train(wl.idx)
    for mode in ("step-loop", "fused", "pmap"):
        trainer, state, data = build_trainer(setup, mode)
        assert isinstance(trainer, Trainer) and type(trainer.fns) is StepFns
        assert (trainer.fuse, trainer.parallel) == (mode != "step-loop", mode == "pmap")
        state, metrics = trainer.train(state, data, wl.idx)
        got = trainer.host_step_metrics(metrics)
        # The same program but for its loop (and pmap's sums over one device): at worst each step's sums over
        # the 30 examples reordered, in float32 (loss ~0.7, weights <= 1).
        bound = run_bound(U32, n=30, steps=len(wl.idx), margin=1)
        np.testing.assert_allclose(got["loss"], want["loss"], rtol=bound)
        for a, b in zip(_leaves(trainer.unreplicate(state).params), _leaves(ref.host_state().params)):
            np.testing.assert_allclose(a, b, rtol=0, atol=bound)


def test_jax_cifar_setup_is_the_experiments_model_and_optimizer():
    """The CIFAR MLP row builds cifar.build_model and cifar.make_optimizer with the experiment's
    config: a smaller model in the config is what the bench builds, and its initial state is
    create_state's for that model and optimizer."""
    wl = make_workload("mlp-cifar", gpu=False, quick=True, seed=3, batch=16, steps=2)
    wl.cfg = dataclasses.replace(wl.cfg, hidden="16")
    setup = jax_setup(wl, "fp32")
    graphdef, state = create_state(cifar.build_model(wl.cfg, axis_name=None), cifar.make_optimizer(wl.cfg), 3)
    assert graphdef == setup.graphdef
    assert [x.shape for x in _leaves(setup.host_state.params)] == [(16,), (3072, 16), (10,), (16, 10)]
    # The same tree (the optimizer's moments and counts too); the bench computes it in one
    # program, whose fusion may round an initialiser's few elementwise operations (scale, shift: <= 4)
    # differently, each by at most u of the values' magnitude.
    assert jax.tree.structure(state) == jax.tree.structure(setup.host_state)
    for a, b in zip(_leaves(setup.host_state), _leaves(state)):
        np.testing.assert_allclose(a, b, rtol=0, atol=4 * U32 * max(np.abs(b).max(), 1e-30))


def test_jax_runner_records_the_trainers_compile_and_program(tmp_path):
    wl = make_workload("mlp-toy", gpu=False, quick=True, seed=0, steps=2)
    setup = jax_setup(wl, "fp32")
    runner = jax_runner(setup, "fused", art=Artifacts(hlo_dir=tmp_path))
    rec = runner.record
    assert rec.compile_s > 0 and {"trace_s", "lower_s", "xla_compile_s", "program_bytes"} <= set(rec.extra)
    assert rec.settings == {"matmul_precision": "highest", "xla_backend_optimization_level": 0}
    # The dumped program is the Trainer's fused period.
    assert (tmp_path / f"{run_name(rec)}.hlo.txt").read_text().startswith("HloModule jit_train_period")
    runner.window()   # a window after compiling compiles nothing more
    assert rec.compile_s > 0


# ------------------------------------------------------------------------------------------------
# The command: output contract
# ------------------------------------------------------------------------------------------------

def _run(argv):
    return run_bench(argv)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    rc = _run(["--suite", "mlp-toy", "--frameworks", "numpy,jax", "--steps", "5", "--windows", "2", "--warmup", "1",
               "--modes", "step,step-loop,fused,pmap", "--out", str(out)])
    return rc, out / "bench"


def test_bench_json_schema_and_table(tiny_run):
    rc, d = tiny_run
    assert rc == 0
    doc = json.loads((d / "bench.json").read_text())
    assert set(doc) == TOP_KEYS and set(doc["settings"]) == SETTINGS_KEYS
    assert [f.name for f in dataclasses.fields(Record)] == RECORD_FIELDS
    assert doc["machine"]["platform"] and doc["versions"]["jax"]
    assert [(r["framework"], r["mode"]) for r in doc["records"]] == [
        ("numpy", "step"), ("jax", "step-loop"), ("jax", "fused"), ("jax", "pmap")]
    table = (d / "bench.md").read_text()
    for r in doc["records"]:
        assert list(r) == RECORD_FIELDS and not r["skipped"], r["note"]
        assert r["suite"] == "mlp-toy" and r["batch_size"] == 30 and r["steps_per_window"] == 5
        assert len(r["window_step_s"]) == r["windows"] == 2
        # The record's own float64 arithmetic redone: equal but for a last-bit rounding (approx's rel 1e-6).
        assert r["step_s"] == pytest.approx(statistics.median(r["window_step_s"]))
        assert r["examples_per_s"] == pytest.approx(30 / r["step_s"])
        # Each record is a row of the table, with its compile time and speedup.
        row = (f"| mlp-toy | {r['framework']} | {r['mode']} | fp32 | 1 | 30 | {r['compile_s']:.3f} | "
               f"{report.fmt_time(r['step_s'])} | {r['examples_per_s']:,.0f} | "
               f"{r['extra']['speedup_vs_baseline']:.2f}x{report._range(r['extra']['speedup_range'])} | "
               f"{report.settings_text(r['settings'])} |")
        assert row in table, row
    pm = doc["records"][3]
    assert pm["devices"] == 1 and doc["ratios"]["mlp-toy/fp32/b30"]["pmap_vs_jit"] == pm["extra"]["pmap_vs_jit"]
    assert set(doc["ratios"]["mlp-toy/fp32/b30"]) == {"baseline", "speedup", "pmap_vs_jit", "pmap_vs_jit_of_medians",
                                                  "fused_vs_step_loop", "speedup_range", "pmap_vs_jit_range",
                                                  "fused_vs_step_loop_range", "best_torch", "torch_not_run"}
    assert doc["ratios"]["mlp-toy/fp32/b30"]["best_torch"] is None   # this run timed no PyTorch
    # Work, memory and compile columns: every JAX record has XLA's counts, every record a utilisation.
    for r in doc["records"]:
        assert r["flops_per_step"] > 0 and 0 < r["utilisation"] < 1 and r["step_s_q1"] <= r["step_s"] <= r["step_s_q3"]
        if r["framework"] == "jax":
            assert r["memory"]["argument_bytes"] > 0 and r["extra"]["persistent_cache"] == "off"
    assert "| GFLOP/step | TFLOP/s | peak TFLOP/s | utilisation |" in table
    assert [c["check"] for c in doc["checks"]] == ["mlp-toy: JAX fused speed / NumPy"]
    assert f"| mlp-toy: JAX fused speed / NumPy | {doc['checks'][0]['value']} | >= 5 |" in table
    assert doc["batches"] == [
        {"suite": "mlp-toy", "framework": r["framework"], "mode": r["mode"], "precision": "fp32", "devices": 1,
         "batches": [30], "recipe_batch": 30, "recipe_examples_per_s": r["examples_per_s"], "best_batch": 30,
         "best_examples_per_s": r["examples_per_s"]} for r in doc["records"]]
    assert (d / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_markdown_rows_of_made_up_records():
    recs = [_rec("rnn-palindrome", "jax", "fused", "bf16", 128, windows=[0.002] * 3),
            skipped("rnn-palindrome", "torch", "compile", "torch.compile off", precision="bf16", batch_size=128)]
    recs[0].compile_s, recs[0].settings = 1.25, {"matmul_precision": "default", "scan_unroll": 15}
    recs[0].note = "a note"
    checks = [{"check": "rnn-palindrome: a check", "value": 2.5, "target": ">= 3", "pass": False}]
    text = report.markdown(recs, report.compute_ratios(recs, gpu=True), checks,
                           {"platform": "gpu", "device_kind": "H100", "cpu_count": 16}, report.batch_summary(recs))
    assert text.startswith("# Training-step benchmark (gpu, H100, 16 CPU cores, load average unknown)\n")
    assert "| rnn-palindrome | jax | fused | bf16 | 1 | 128 | 1.250 | 2.00 ms | 64,000 |  | matmul default, unroll 15 " \
           "| a note |" in text
    assert "| rnn-palindrome | torch | compile | bf16 | 1 | 128 | - | - | - | - | | skipped: torch.compile off |" in text
    # No PyTorch candidate ran: the row names the one that did not.
    assert "| rnn-palindrome/bf16/b128 | - | none ran; not run: compile | - | - | - | - |" in text
    assert "| rnn-palindrome | jax | fused | bf16 | 1 | 128 | 64,000 (128) | 128 | 64,000 |" in text
    assert text.endswith("| rnn-palindrome: a check | 2.5 | >= 3 | NO |\n")


def test_devices_beyond_local_are_skipped_with_a_note(tmp_path):
    rc = _run(["--suite", "mlp-toy", "--frameworks", "jax", "--steps", "2", "--windows", "1", "--warmup", "0",
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
    assert import_torch() is None
    rc = _run(["--suite", "mlp-toy", "--frameworks", "torch", "--steps", "2", "--windows", "1",
               "--out", str(tmp_path)])
    assert rc == 0
    doc = json.loads((tmp_path / "bench" / "bench.json").read_text())
    assert doc["settings"]["torch_available"] is False
    recs = [r for r in doc["records"] if r["framework"] == "torch"]
    # The toy's candidates: every mode but the RNN's nn.RNN ones.
    assert [r["mode"] for r in recs] == ["eager", "compile", "compile-max-autotune", "compile-cudagraphs",
                                         "compile+opt"]
    assert all(r["skipped"] and "not installed" in r["note"] for r in recs)
    assert "skipped" in (tmp_path / "bench" / "bench.md").read_text()


@pytest.mark.slow
def test_whole_run_child_runs_the_project_path():
    r = whole_run.whole_run("jax", None, steps=60)
    # (t3 - t2) + (t4 - t3) against t4 - t2 in float64: a few ulps of a clock reading (< 1e-10 s) apart.
    assert r["steps"] == 60 and r["total_s"] == pytest.approx(r["build_s"] + r["run_s"], abs=1e-6)
    assert r["programs_compiled"] >= 1 and r["backend_compile_s"] > 0 and r["cache_hits"] == 0
    # The toy run's trainer compiles its train period; the costliest programs are listed by name.
    assert "train_period" in [name for name, _ in r["programs"]]
    assert 0 <= r["final_test_accuracy"] <= 1


def test_bad_input_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError):
        _run(["--suite", "mlp-toy", "--steps", "0", "--out", str(tmp_path)])
    with pytest.raises(UsageError):
        _run(["--suite", "mlp-toy", "--time-budget", "0", "--out", str(tmp_path)])
    with pytest.raises(UsageError):
        _run(["--suite", "mlp-toy", "--batch-size", "30", "--batch-sizes", "30", "--out", str(tmp_path)])
    with pytest.raises(SystemExit):
        _run(["--suite", "nope"])
    with pytest.raises(SystemExit):     # a suite name before suites were the experiments' names
        _run(["--suite", "cnn"])
    with pytest.raises(SystemExit):     # dropped: it was accepted and ignored
        _run(["--suite", "mlp-toy", "--no-progress"])


def test_time_budget_skips_what_would_start_late(tmp_path):
    rc = _run(["--suite", "mlp-toy,rnn-palindrome", "--frameworks", "numpy,jax", "--modes", "step,fused", "--time-budget", "1e-9",
               "--out", str(tmp_path)])
    assert rc == 0
    doc = json.loads((tmp_path / "bench" / "bench.json").read_text())
    assert doc["settings"]["time_budget_s"] == 1e-9
    assert [(r["suite"], r["framework"]) for r in doc["records"]] == [("mlp-toy", "numpy"), ("mlp-toy", "jax"), ("rnn-palindrome", "jax")]
    assert all(r["skipped"] and "--time-budget" in r["note"] for r in doc["records"])
    assert doc["checks"] == [] and doc["batches"] == []


def test_an_interrupted_run_keeps_the_groups_it_finished(tmp_path, monkeypatch):
    """bench.json and bench.md are rewritten after every group (suite and batch), so a run killed
    in its second group still returns the first group's rows, marked partial."""
    from train.bench import run as bench_run
    real, calls = bench_run.measure, []

    def measure_then_interrupt(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            assert json.loads((tmp_path / "bench" / "bench.json").read_text())["partial"] is True
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(bench_run, "measure", measure_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        _run(["--suite", "mlp-toy", "--frameworks", "numpy", "--modes", "step", "--batch-sizes", "16,32",
              "--steps", "2", "--windows", "1", "--warmup", "0", "--out", str(tmp_path)])
    doc = json.loads((tmp_path / "bench" / "bench.json").read_text())
    assert doc["partial"] is True and len(calls) == 2
    assert [(r["framework"], r["batch_size"], r["skipped"]) for r in doc["records"]] == [("numpy", 16, False)]
    assert doc["records"][0]["examples_per_s"] > 0
    assert "| mlp-toy | numpy |" in (tmp_path / "bench" / "bench.md").read_text()
    assert not (tmp_path / "bench" / "bench.png").exists()


def test_a_finished_run_is_not_partial(tiny_run):
    _, d = tiny_run
    assert json.loads((d / "bench.json").read_text())["partial"] is False and (d / "bench.png").exists()
