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
    assert doc["ratios"]["toy/fp32/b30"]["pmap_vs_jit"] > 0
    # fp32 is compiled under matmul precision "highest", whatever the session's default is.
    assert jf_settings(doc) == {"matmul_precision": "highest"}
    jf = next(r for r in doc["records"] if r["mode"] == "fused")
    assert doc["batches"] == [
        {"suite": "toy", "framework": r["framework"], "mode": r["mode"], "precision": "fp32", "devices": 1,
         "batches": [30], "recipe_batch": 30, "recipe_examples_per_s": r["examples_per_s"], "best_batch": 30,
         "best_examples_per_s": r["examples_per_s"]} for r in doc["records"]]
    assert {"trace_s", "lower_s", "xla_compile_s"} <= set(jf["extra"])
    table = (d / "bench.md").read_text()
    assert "| suite | framework | mode |" in table and "| toy | jax | fused |" in table
    assert (d / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def jf_settings(doc):
    return next(r for r in doc["records"] if r["mode"] == "fused")["settings"]


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


# ---------------------------------------------------------------------------------------------------
# Batch sweeps, settings, acceptance checks
# ---------------------------------------------------------------------------------------------------

def test_batch_sizes_parse_per_suite_and_for_all():
    spec = bench._batch_sizes("256, cnn:1024,rnn:128,cnn:256")
    assert spec == [(None, 256), ("cnn", 1024), ("rnn", 128), ("cnn", 256)]
    assert bench.suite_batches("cnn", spec) == [256, 1024]       # in order, no repeats
    assert bench.suite_batches("rnn", spec) == [256, 128]
    assert bench.suite_batches("toy", [("cnn", 8)]) == [None]     # none applies: the suite's default
    for bad in ("0", "cnn:x", "gan:64", ","):
        with pytest.raises(argparse.ArgumentTypeError):
            bench._batch_sizes(bad)


def test_workload_sizes_by_platform_and_batch():
    gpu = bench.make_workload("cnn", gpu=True, quick=False, seed=0)
    assert gpu.batch == bench.RECIPE_BATCH["cnn"] == 256 and len(gpu.train_x) == bench.GPU_TRAIN_IMAGES == 50_000
    assert gpu.idx.shape == (gpu.steps, 256) and gpu.idx.max() < 50_000 and len(set(gpu.idx[0])) == 256
    big = bench.make_workload("cnn", gpu=True, quick=False, seed=0, batch=1024)
    # Four times the batch, a quarter of the steps (at least 10), so a window's work stays about the same.
    assert big.steps == max(min(gpu.steps, 10), round(gpu.steps / 4)) and big.idx.shape == (big.steps, 1024)
    cpu = bench.make_workload("mlp-cifar", gpu=False, quick=True, seed=0)
    assert len(cpu.train_x) == 2048 and cpu.batch == 256


def test_sweep_runs_every_batch_and_reports_the_best(tmp_path):
    rc = _run(["--suite", "toy", "--frameworks", "numpy,jax", "--modes", "step,fused", "--batch-sizes", "30,60",
               "--steps", "4", "--windows", "2", "--warmup", "0", "--out", str(tmp_path)])
    assert rc == 0
    doc = json.loads((tmp_path / "bench" / "bench.json").read_text())
    recs = doc["records"]
    assert sorted((r["framework"], r["batch_size"]) for r in recs) == [("jax", 30), ("jax", 60), ("numpy", 30),
                                                                       ("numpy", 60)]
    for b in doc["batches"]:
        mine = {r["batch_size"]: r["examples_per_s"] for r in recs if r["framework"] == b["framework"]}
        assert b["batches"] == [30, 60] and b["recipe_batch"] == 30
        assert b["recipe_examples_per_s"] == mine[30]
        assert b["best_examples_per_s"] == max(mine.values()) and mine[b["best_batch"]] == max(mine.values())
    assert set(doc["ratios"]) == {"toy/fp32/b30", "toy/fp32/b60"}
    assert doc["settings"]["batch_sizes"] == [[None, 30], [None, 60]]
    assert "| toy | jax | fused | fp32 | 1 | 30, 60 |" in (tmp_path / "bench" / "bench.md").read_text()


def test_precisions_at_recipe_and_swept_batches():
    assert bench.run_precisions("cnn", 256, ["fp32", "bf16"], ["bf16"]) == ["fp32", "bf16"]
    assert bench.run_precisions("cnn", 1024, ["fp32", "bf16"], ["bf16"]) == ["bf16"]
    assert bench.run_precisions("cnn", 1024, ["fp32", "bf16"], None) == ["fp32", "bf16"]


def test_compile_policy():
    wl = lambda suite, batch: argparse.Namespace(suite=suite, batch=batch)
    gpu = bench.compile_policy("auto", gpu=True, quick=False)
    assert gpu(wl("cnn", 256), "bf16") == "" and gpu(wl("rnn", 128), "bf16") == ""
    assert "recipe batch 256" in gpu(wl("cnn", 256), "fp32") and "recipe batch 256" in gpu(wl("cnn", 1024), "bf16")
    assert "--quick" in bench.compile_policy("auto", gpu=False, quick=True)(wl("cnn", 8), "fp32")
    assert bench.compile_policy("auto", gpu=False, quick=False)(wl("cnn", 8), "fp32") == ""
    assert bench.compile_policy("on", gpu=True, quick=True)(wl("cnn", 1024), "fp32") == ""
    assert "off" in bench.compile_policy("off", gpu=True, quick=False)(wl("cnn", 256), "bf16")


def test_torch_settings_are_recorded(tmp_path):
    torch = pytest.importorskip("torch")
    from torch.optim.optimizer import _get_fused_kernels_supported_devices

    rc = _run(["--suite", "mlp-cifar", "--frameworks", "torch", "--modes", "eager", "--precision", "fp32",
               "--batch-size", "32",
               "--steps", "2", "--windows", "1", "--warmup", "0", "--out", str(tmp_path)])
    assert rc == 0
    (rec,) = json.loads((tmp_path / "bench" / "bench.json").read_text())["records"]
    cuda = torch.cuda.is_available()
    # fp32 is full fp32: TF32 off on a GPU (None: no such switch on CPU).
    assert rec["settings"] == {"channels_last": False, "cudnn_benchmark": cuda, "tf32": False if cuda else None,
                               "fused_adamw": "cuda" in _get_fused_kernels_supported_devices() if cuda else
                               "cpu" in _get_fused_kernels_supported_devices(),
                               "autocast": None, "compile_mode": None}


def test_settings_text():
    s = {"channels_last": True, "cudnn_benchmark": True, "tf32": True, "fused_adamw": False, "autocast": "bf16",
         "compile_mode": "reduce-overhead", "scan_unroll": 15, "matmul_precision": None}
    assert bench.settings_text(s) == ("channels_last, cudnn.benchmark, TF32, no fused AdamW, autocast bf16, "
                                      "compile reduce-overhead, unroll 15")
    assert bench.settings_text({"channels_last": False, "fused_adamw": None, "tf32": None}) == ""
    assert bench.settings_text({"tf32": False, "matmul_precision": "highest"}) == "no TF32, matmul highest"


def test_precision_names_resolve():
    spec = bench._precisions("bf16, tf32,rnn:fp32")
    assert spec == [(None, "bf16"), (None, "tf32"), ("rnn", "fp32")]
    assert bench.resolve_precisions(spec, gpu=True, suite="rnn") == ["fp32", "tf32", "bf16"]   # fixed order
    assert bench.resolve_precisions(spec, gpu=True, suite="cnn") == ["tf32", "bf16"]
    assert bench.resolve_precisions(spec, gpu=False) == ["fp32", "tf32", "bf16"]               # any suite
    auto = bench._precisions("auto")
    assert bench.resolve_precisions(auto, gpu=False, suite="cnn") == ["fp32"]
    assert bench.resolve_precisions(auto, gpu=True, suite="cnn") == ["tf32", "bf16"]
    assert bench.resolve_precisions(bench._precisions("auto,cnn:fp32"), gpu=True, suite="cnn") == ["fp32", "tf32",
                                                                                                   "bf16"]
    assert bench.run_precisions("rnn", 8192, ["fp32", "tf32", "bf16"], ["bf16"]) == ["bf16"]
    for bad in ("fp16", "cnn:", "gan:fp32", ","):
        with pytest.raises(argparse.ArgumentTypeError):
            bench._precisions(bad)


def test_dump_hlo_per_runner_with_its_matmul_precision(tmp_path):
    """fp32 runners are compiled under matmul precision "highest" (so their HLO says so), tf32 under the
    default, whatever the session's default is; each compiled runner's optimised HLO is written."""
    hlo = tmp_path / "hlo"
    rc = _run(["--suite", "toy", "--frameworks", "jax", "--modes", "step-loop,fused,pmap", "--precision", "fp32,tf32",
               "--steps", "2", "--windows", "1", "--warmup", "0", "--dump-hlo", str(hlo), "--out", str(tmp_path)])
    assert rc == 0
    recs = json.loads((tmp_path / "bench" / "bench.json").read_text())["records"]
    names = {f"toy-{m}-{p}-b30" for m in ("step-loop", "fused", "pmap") for p in ("fp32", "tf32")}
    assert {f.name for f in hlo.iterdir()} == {f"{n}.hlo.txt" for n in names}
    for r in recs:
        path = hlo / f"{bench.run_name(bench.Record(**r))}.hlo.txt"
        text = path.read_text()
        assert r["extra"]["hlo"] == {"path": str(path), "bytes": path.stat().st_size}
        assert text.startswith("HloModule") and "ENTRY" in text and " dot(" in text and len(text) > 2000
        # The toy MLP's step has 5 dots (2 forward, 3 backward: none for the input's gradient).
        assert text.count("operand_precision={highest,highest}") == (5 if r["precision"] == "fp32" else 0), path.name
        assert r["settings"]["matmul_precision"] == {"fp32": "highest", "tf32": "default (TF32 on GPU)"}[r["precision"]]
        assert "profile" not in r["extra"]


def test_profile_traces_one_window_of_the_chosen_runners(tmp_path):
    prof = tmp_path / "prof"
    rc = _run(["--suite", "toy", "--frameworks", "jax", "--modes", "step-loop,fused", "--precision", "fp32,tf32",
               "--steps", "3", "--windows", "1", "--warmup", "0", "--profile", str(prof),
               "--profile-only", "toy-fused-*,nothing-*", "--out", str(tmp_path)])
    assert rc == 0
    doc = json.loads((tmp_path / "bench" / "bench.json").read_text())
    assert doc["settings"]["profile_only"] == ["toy-fused-*", "nothing-*"]
    assert sorted(p.name for p in prof.iterdir()) == ["toy-fused-fp32-b30", "toy-fused-tf32-b30"]
    for r in doc["records"]:
        if r["mode"] != "fused":
            assert "profile" not in r["extra"]
            continue
        d = prof / f"toy-fused-{r['precision']}-b30"
        (xplane,) = d.rglob("*.xplane.pb")
        files = [f for f in d.rglob("*") if f.is_file()]
        assert r["extra"]["profile"] == {"path": str(d), "steps": 3, "files": len(files),
                                         "bytes": sum(f.stat().st_size for f in files)}
        assert xplane.stat().st_size > 1000
        # The profiled window ran the compiled program (its HLO module is named after the jitted function).
        assert b"train_steps" in xplane.read_bytes()


def test_torch_tf32_switch():
    torch = pytest.importorskip("torch")
    from train import torch_models as tm

    m, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    new_api = hasattr(m, "fp32_precision") and hasattr(getattr(cudnn, "conv", None), "fp32_precision")
    read = (lambda: (m.fp32_precision, cudnn.conv.fp32_precision, cudnn.rnn.fp32_precision)) if new_api else \
        (lambda: (m.allow_tf32, cudnn.allow_tf32))
    before = read()
    try:
        tm.set_tf32(False)
        assert read() == (("ieee",) * 3 if new_api else (False, False))
        tm.set_tf32(True)
        assert read() == (("tf32",) * 3 if new_api else (True, True))
    finally:
        if new_api:
            m.fp32_precision, cudnn.conv.fp32_precision, cudnn.rnn.fp32_precision = before
        else:
            m.allow_tf32, cudnn.allow_tf32 = before


def _rec(suite, framework, mode, precision, batch, per_s, windows=3):
    step = batch / per_s
    return bench.Record(suite, framework, mode, precision, 1, batch, step_s=step, examples_per_s=per_s,
                        windows=windows, window_step_s=[step] * windows)


def test_batch_summary_recipe_and_best():
    recs = [_rec("cnn", "jax", "fused", "bf16", 256, 150_000), _rec("cnn", "jax", "fused", "bf16", 1024, 250_000),
            _rec("cnn", "jax", "fused", "bf16", 4096, 240_000), _rec("rnn", "torch", "eager", "fp32", 512, 9_000),
            bench.skipped("cnn", "torch", "compiled", "off", precision="bf16", batch_size=1024)]
    assert bench.batch_summary(recs) == [
        {"suite": "cnn", "framework": "jax", "mode": "fused", "precision": "bf16", "devices": 1,
         "batches": [256, 1024, 4096], "recipe_batch": 256, "recipe_examples_per_s": 150_000,
         "best_batch": 1024, "best_examples_per_s": 250_000},
        {"suite": "rnn", "framework": "torch", "mode": "eager", "precision": "fp32", "devices": 1,
         "batches": [512], "recipe_batch": 128, "recipe_examples_per_s": None,
         "best_batch": 512, "best_examples_per_s": 9_000}]


def test_gpu_acceptance_checks_compare_with_the_best_torch_at_the_same_batch():
    recs = [_rec("cnn", "jax", "fused", "bf16", 256, 150_000), _rec("cnn", "jax", "fused", "bf16", 1024, 250_000),
            _rec("cnn", "jax", "fused", "fp32", 1024, 900_000),            # fp32 is not what the checks quote
            _rec("cnn", "torch", "eager", "bf16", 256, 50_000), _rec("cnn", "torch", "compiled", "bf16", 256, 60_000),
            _rec("cnn", "torch", "eager", "bf16", 1024, 70_000),
            _rec("cnn", "torch", "compiled", "bf16", 4096, 500_000),        # another batch: not compared
            _rec("rnn", "jax", "fused", "bf16", 128, 600_000), _rec("rnn", "jax", "fused", "bf16", 4096, 400_000)]
    checks = {c["check"]: (c["value"], c["target"], c["pass"]) for c in bench.acceptance_checks(recs, gpu=True)}
    assert checks == {
        "cnn: JAX fused bf16 examples/s at batch 256 (recipe)": (150_000, ">= 200,000", False),
        "cnn: JAX fused bf16 / best PyTorch (torch compiled bf16, 60,000/s) at batch 256 (recipe)": (2.5, ">= 3", False),
        "cnn: JAX fused bf16 examples/s at batch 1024 (best)": (250_000, ">= 200,000", True),
        "cnn: JAX fused bf16 / best PyTorch (torch eager bf16, 70,000/s) at batch 1024 (best)":
            (round(250 / 70, 4), ">= 3", True),
        "rnn: JAX fused bf16 examples/s at batch 128 (recipe+best)": (600_000, ">= 500,000", True),
    }
    # A best batch without a PyTorch record cannot pass the speed ratio; on CPU no GPU target applies.
    alone = [_rec("cnn", "jax", "fused", "bf16", 256, 300_000)]
    (c1, c2) = bench.acceptance_checks(alone, gpu=True)
    assert c1["pass"] and c2["value"] is None and not c2["pass"] and "no PyTorch record" in c2["check"]
    assert bench.acceptance_checks(recs, gpu=False) == []


def test_time_budget_skips_what_would_start_late(tmp_path):
    assert bench.Budget(None).spent() == "" and bench.Budget(60.0).spent() == ""
    assert "--time-budget 5 s was spent" in bench.Budget(5.0, start=-1e9).spent()
    rc = _run(["--suite", "toy,rnn", "--frameworks", "numpy,jax", "--modes", "step,fused", "--time-budget", "1e-9",
               "--out", str(tmp_path)])
    assert rc == 0
    doc = json.loads((tmp_path / "bench" / "bench.json").read_text())
    assert doc["settings"]["time_budget_s"] == 1e-9
    assert {(r["suite"], r["framework"]) for r in doc["records"]} == {("toy", "numpy"), ("toy", "jax"), ("rnn", "jax")}
    assert all(r["skipped"] and "--time-budget" in r["note"] for r in doc["records"])
    with pytest.raises(bench.UsageError):
        _run(["--suite", "toy", "--time-budget", "0", "--out", str(tmp_path)])
    with pytest.raises(bench.UsageError):
        _run(["--suite", "toy", "--batch-size", "30", "--batch-sizes", "30", "--out", str(tmp_path)])


def test_torch_channels_last_and_fused_adamw_train_like_the_plain_step():
    torch = pytest.importorskip("torch")
    import numpy as np

    from train import torch_models as tm

    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)).permute(0, 3, 1, 2)
    y = torch.as_tensor(rng.integers(0, 10, 8))
    mean, std = np.full(3, 0.5, np.float32), np.full(3, 0.25, np.float32)
    grads, losses = [], []
    for cl in (False, True):
        model, opt, fused = tm.build("cnn", lr=1e-3, seed=0, channels_last=cl)
        assert fused is bool(opt.defaults["fused"])
        pre = tm.make_preprocess("cnn", mean=mean, std=std, device=torch.device("cpu"), channels_last=cl)
        step = tm.make_train_step(model, opt, pre, device_type="cpu")
        losses.append(float(step(x if cl else x.contiguous(), y).detach()))   # the step leaves its gradients
        assert model.features[0].weight.is_contiguous(memory_format=torch.channels_last) == cl
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]).numpy())
    # Same initial weights and batch: the layout changes the memory order, not the result.
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)
    np.testing.assert_allclose(grads[1], grads[0], atol=1e-4 * np.abs(grads[0]).max())
