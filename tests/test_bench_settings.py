"""``python -m train bench``: batch sweeps, precisions, settings, the acceptance checks, --dump-hlo and
--profile, and the PyTorch runner. No assertion depends on how fast anything ran."""

import argparse
import json

import numpy as np
import pytest

from tolerances import U32
from train.bench import report, run as bench_run
from train.bench.cli import batch_sizes, precisions
from train.bench.records import Record, run_name, skipped
from train.bench.suites import GPU_TRAIN_IMAGES, RECIPE_BATCH, SUITES, unknown_suite
from train.bench.workloads import make_workload
from train.experiments import cifar
from train.errors import UsageError
from train.precision import TABLE

from test_bench import _rec, _run, _windows

# ------------------------------------------------------------------------------------------------
# Batch sweeps, precisions, settings, acceptance checks
# ------------------------------------------------------------------------------------------------

def test_batch_sizes_parse_per_suite_and_for_all():
    spec = batch_sizes("256, cnn-cifar:1024,rnn-palindrome:128,cnn-cifar:256")
    assert spec == [(None, 256), ("cnn-cifar", 1024), ("rnn-palindrome", 128), ("cnn-cifar", 256)]
    assert bench_run.suite_batches("cnn-cifar", spec) == [256, 1024]       # in order, no repeats
    assert bench_run.suite_batches("rnn-palindrome", spec) == [256, 128]
    assert bench_run.suite_batches("mlp-toy", [("cnn-cifar", 8)]) == [None]     # none applies: the suite's default
    for bad in ("0", "cnn-cifar:x", "gan:64", ",", "cnn:64"):
        with pytest.raises(argparse.ArgumentTypeError):
            batch_sizes(bad)


def test_suites_are_the_experiments_names():
    from train.experiments.registry import EXPERIMENTS

    assert SUITES == ("mlp-toy", "mlp-cifar", "cnn-cifar", "rnn-palindrome")
    assert set(SUITES) <= set(EXPERIMENTS)
    assert unknown_suite("cnn") == ("unknown suite 'cnn' (now 'cnn-cifar'); suites are the experiments' names: "
                                    "mlp-toy, mlp-cifar, cnn-cifar, rnn-palindrome")
    with pytest.raises(UsageError, match="now 'rnn-palindrome'"):
        make_workload("rnn", gpu=False, quick=True, seed=0)


def test_workload_sizes_and_configs():
    gpu = make_workload("cnn-cifar", gpu=True, quick=False, seed=0)
    assert gpu.batch == RECIPE_BATCH["cnn-cifar"] == 256 and len(gpu.train_x) == GPU_TRAIN_IMAGES == 50_000
    assert gpu.idx.shape == (gpu.steps, 256) and gpu.idx.max() < 50_000 and len(set(gpu.idx[0])) == 256
    big = make_workload("cnn-cifar", gpu=True, quick=False, seed=0, batch=1024)
    # Four times the batch, a quarter of the steps (at least 10), so a window's work stays about the same.
    assert big.steps == max(min(gpu.steps, 10), round(gpu.steps / 4)) and big.idx.shape == (big.steps, 1024)
    cpu = make_workload("mlp-cifar", gpu=False, quick=True, seed=0)
    assert len(cpu.train_x) == 2048 and cpu.batch == 256
    # The experiments' own settings: learning rates, hidden sizes, the batch and seed asked for.
    assert (cpu.cfg, cpu.cfg.lr, cpu.cfg.hidden) == (cifar.mlp_config(batch_size=256, devices=1), 1e-3,
                                                     "1024,512,256,256,128")
    rnn = make_workload("rnn-palindrome", gpu=False, quick=True, seed=5)
    c = rnn.cfg
    assert (c.lr, c.hidden, c.seed, c.input_length, rnn.train_x.shape[1]) == (1e-3, 128, 5, 15, 15)
    toy = make_workload("mlp-toy", gpu=False, quick=True, seed=0)
    assert (toy.cfg.lr, toy.cfg.hidden, toy.cfg.framework) == (0.01, "20", "jax")
    # The recipe batch is each experiment's default batch.
    assert RECIPE_BATCH == {"mlp-toy": 30, "mlp-cifar": 256, "cnn-cifar": 256, "rnn-palindrome": 128}
    with pytest.raises(UsageError):
        make_workload("mlp-toy", gpu=False, quick=True, seed=0, batch=10_000)


def test_sweep_runs_every_batch_and_reports_the_best(tmp_path):
    rc = _run(["--suite", "mlp-toy", "--frameworks", "numpy,jax", "--modes", "step,fused", "--batch-sizes", "30,60",
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
    assert set(doc["ratios"]) == {"mlp-toy/fp32/b30", "mlp-toy/fp32/b60"}
    assert doc["settings"]["batch_sizes"] == [[None, 30], [None, 60]]
    assert "| mlp-toy | jax | fused | fp32 | 1 | 30, 60 |" in (tmp_path / "bench" / "bench.md").read_text()


def test_precisions_resolve_and_sweep():
    spec = precisions("bf16, tf32,rnn-palindrome:fp32")
    assert spec == [(None, "bf16"), (None, "tf32"), ("rnn-palindrome", "fp32")]
    resolve = bench_run.resolve_precisions
    assert resolve(spec, gpu=True, suite="rnn-palindrome") == ["fp32", "tf32", "bf16"]   # fixed order
    assert resolve(spec, gpu=True, suite="cnn-cifar") == ["tf32", "bf16"]
    assert resolve(spec, gpu=False) == ["fp32", "tf32", "bf16"]               # any suite
    auto = precisions("auto")
    assert resolve(auto, gpu=False, suite="cnn-cifar") == ["fp32"]
    # auto means what it means for the experiments: bf16 on a GPU.
    assert resolve(auto, gpu=True, suite="cnn-cifar") == ["bf16"]
    assert resolve(precisions("auto,cnn-cifar:fp32"), gpu=True, suite="cnn-cifar") == ["fp32", "bf16"]
    assert bench_run.run_precisions("cnn-cifar", 256, ["fp32", "bf16"], ["bf16"]) == ["fp32", "bf16"]
    assert bench_run.run_precisions("cnn-cifar", 1024, ["fp32", "bf16"], ["bf16"]) == ["bf16"]
    assert bench_run.run_precisions("cnn-cifar", 1024, ["fp32", "bf16"], None) == ["fp32", "bf16"]
    for bad in ("fp16", "cnn-cifar:", "gan:fp32", ","):
        with pytest.raises(argparse.ArgumentTypeError):
            precisions(bad)


def test_compile_policy():
    wl = lambda suite, batch: argparse.Namespace(suite=suite, batch=batch)  # noqa: E731
    policy = bench_run.compile_policy
    gpu = policy("auto", gpu=True, quick=False)
    assert gpu(wl("cnn-cifar", 256), "bf16") == "" and gpu(wl("rnn-palindrome", 128), "bf16") == ""
    assert "recipe batch 256" in gpu(wl("cnn-cifar", 256), "fp32") and "recipe batch 256" in gpu(wl("cnn-cifar", 1024), "bf16")
    assert "--quick" in policy("auto", gpu=False, quick=True)(wl("cnn-cifar", 8), "fp32")
    assert policy("auto", gpu=False, quick=False)(wl("cnn-cifar", 8), "fp32") == ""
    assert policy("on", gpu=True, quick=True)(wl("cnn-cifar", 1024), "fp32") == ""
    assert "off" in policy("off", gpu=True, quick=False)(wl("cnn-cifar", 256), "bf16")
    # A candidate's own policy: CUDA graphs everywhere, the other compiled candidates at bf16 only.
    from train.bench.cli import _compile_policy
    mixed = policy(_compile_policy("recipe-bf16,compile-cudagraphs:on"), gpu=True, quick=False)
    assert mixed(wl("cnn-cifar", 256), "fp32", "compile-cudagraphs") == ""
    assert "recipe batch" in mixed(wl("cnn-cifar", 256), "fp32", "compile+opt")
    assert mixed(wl("cnn-cifar", 256), "bf16", "compile+opt") == ""
    for bad in ("sometimes", "eager:on", "compile:maybe"):
        with pytest.raises(argparse.ArgumentTypeError):
            _compile_policy(bad)


def test_best_torch_is_named_in_every_ratio_row():
    """The fastest PyTorch candidate that ran, at the row's suite, precision and batch, with its RNN
    implementation; JAX fused over it paired by round; the candidates that did not run, with why."""
    loop = _rec("rnn-palindrome", "torch", "compile", "fp32", 128, windows=[4.0, 2.0, 4.0])
    loop.settings = {"implementation": "loop"}
    nn_rnn = _rec("rnn-palindrome", "torch", "nn.RNN-eager", "fp32", 128, windows=[2.0, 3.0, 2.0])
    nn_rnn.settings = {"implementation": "nn.RNN"}
    recs = [_rec("rnn-palindrome", "jax", "fused", "fp32", 128, windows=[1.0, 1.0, 4.0]), loop, nn_rnn,
            _rec("rnn-palindrome", "torch", "eager", "bf16", 128, windows=[0.5] * 3),   # another precision
            skipped("rnn-palindrome", "torch", "compile-cudagraphs", "CUDA only", batch_size=128)]
    d = report.compute_ratios(recs, gpu=False)["rnn-palindrome/fp32/b128"]
    assert d["best_torch"] == {"name": "nn.RNN-eager", "mode": "nn.RNN-eager", "implementation": "nn.RNN",
                               "examples_per_s": 64.0}
    assert d["torch_not_run"] == {"compile-cudagraphs": "CUDA only"}
    assert d["jax_fused_vs_best_torch"] == 2.0 and d["jax_fused_vs_best_torch_range"] == [0.5, 3.0]  # 2/1, 3/1, 2/4
    assert d["jax_best_vs_best_torch"] == {"mode": "fused", "ratio": 2.0, "range": [0.5, 3.0]}
    assert report.torch_name(loop) == "compile (loop)"
    assert report.compute_ratios(recs, gpu=False)["rnn-palindrome/bf16/b128"]["best_torch"]["name"] == "eager"
    row = next(r for r in report.markdown(recs, report.compute_ratios(recs, gpu=False), [], {}).splitlines()
               if r.startswith("| rnn-palindrome/fp32/b128 |"))
    assert "| nn.RNN-eager, 64/s; not run: compile-cudagraphs | 2.00x (0.50-3.00) |" in row


def test_jax_at_its_best_is_step_loop_where_it_does_not_fuse():
    """A CPU convnet runs one step per call: the ratio row takes JAX's fastest single-device mode."""
    recs = [_rec("cnn-cifar", "jax", "step-loop", "fp32", 32, windows=[2.0, 2.0, 2.0]),
            _rec("cnn-cifar", "torch", "eager", "fp32", 32, windows=[3.0, 1.0, 3.0])]
    d = report.compute_ratios(recs, gpu=False)["cnn-cifar/fp32/b32"]
    assert "jax_fused_vs_best_torch" not in d
    assert d["jax_best_vs_best_torch"] == {"mode": "step-loop", "ratio": 1.5, "range": [0.5, 1.5]}  # 3/2, 1/2, 3/2
    row = next(r for r in report.markdown(recs, report.compute_ratios(recs, gpu=False), [], {}).splitlines()
               if r.startswith("| cnn-cifar/fp32/b32 |"))
    assert "| 1.50x (0.50-1.50) step-loop |" in row


def test_legacy_mode_names():
    """An earlier bench.json's "compiled" is the candidate of its compile mode; --modes compiled still parses."""
    from train.bench.cli import _modes
    from train.bench.records import canonical_mode
    assert canonical_mode("compiled", {"compile_mode": "reduce-overhead"}) == "compile-cudagraphs"
    assert canonical_mode("compiled", {"compile_mode": "default"}) == "compile"
    assert canonical_mode("eager", {}) == "eager"
    assert _modes("fused,compiled,eager") == ["fused", "compile", "compile-cudagraphs", "eager"]


def test_settings_text():
    s = {"channels_last": True, "cudnn_benchmark": True, "tf32": True, "fused_adamw": False, "autocast": "bf16",
         "compile_mode": "reduce-overhead", "scan_unroll": 15, "matmul_precision": None}
    assert report.settings_text(s) == ("channels_last, cudnn.benchmark, TF32, no fused AdamW, autocast bf16, "
                                       "compile reduce-overhead, unroll 15")
    assert report.settings_text({"channels_last": False, "fused_adamw": None, "tf32": None}) == ""
    assert report.settings_text({"tf32": False, "matmul_precision": "highest"}) == "no TF32, matmul highest"
    assert report.settings_text({"xla_backend_optimization_level": 0}) == "XLA opt level 0"


def test_batch_summary_recipe_and_best():
    recs = [_rec("cnn-cifar", "jax", "fused", "bf16", 256, 150_000), _rec("cnn-cifar", "jax", "fused", "bf16", 1024, 250_000),
            _rec("cnn-cifar", "jax", "fused", "bf16", 4096, 240_000), _rec("rnn-palindrome", "torch", "eager", "fp32", 512, 9_000),
            skipped("cnn-cifar", "torch", "compile", "off", precision="bf16", batch_size=1024)]
    # Made-up figures passed through: approx only for float rounding.
    assert report.batch_summary(recs) == [
        {"suite": "cnn-cifar", "framework": "jax", "mode": "fused", "precision": "bf16", "devices": 1,
         "batches": [256, 1024, 4096], "recipe_batch": 256, "recipe_examples_per_s": pytest.approx(150_000),
         "best_batch": 1024, "best_examples_per_s": pytest.approx(250_000)},
        {"suite": "rnn-palindrome", "framework": "torch", "mode": "eager", "precision": "fp32", "devices": 1,
         "batches": [512], "recipe_batch": 128, "recipe_examples_per_s": None,
         "best_batch": 512, "best_examples_per_s": pytest.approx(9_000)}]


def test_gpu_acceptance_checks_compare_with_the_best_torch_at_the_same_batch():
    recs = [_rec("cnn-cifar", "jax", "fused", "bf16", 256, 150_000), _rec("cnn-cifar", "jax", "fused", "bf16", 1024, 250_000),
            _rec("cnn-cifar", "jax", "fused", "fp32", 1024, 900_000),            # fp32 is not what the checks quote
            _rec("cnn-cifar", "torch", "eager", "bf16", 256, 50_000), _rec("cnn-cifar", "torch", "compile-cudagraphs", "bf16", 256, 60_000),
            _rec("cnn-cifar", "torch", "eager", "bf16", 1024, 70_000),
            _rec("cnn-cifar", "torch", "compile-cudagraphs", "bf16", 4096, 500_000),        # another batch: not compared
            _rec("rnn-palindrome", "jax", "fused", "bf16", 128, 600_000), _rec("rnn-palindrome", "jax", "fused", "bf16", 4096, 400_000)]
    checks = {c["check"]: (c["value"], c["target"], c["pass"]) for c in report.acceptance_checks(recs, gpu=True)}
    assert checks == {
        "cnn-cifar: JAX fused bf16 examples/s at batch 256 (recipe)": (150_000, ">= 200,000", False),
        "cnn-cifar: JAX fused bf16 / best PyTorch (torch compile-cudagraphs bf16, 60,000/s) at batch 256 (recipe)":
            (2.5, ">= 3", False),
        "cnn-cifar: JAX fused bf16 examples/s at batch 1024 (best)": (250_000, ">= 200,000", True),
        "cnn-cifar: JAX fused bf16 / best PyTorch (torch eager bf16, 70,000/s) at batch 1024 (best)":
            (round(250 / 70, 4), ">= 3", True),
        "rnn-palindrome: JAX fused bf16 examples/s at batch 128 (recipe+best)": (600_000, ">= 500,000", True),
    }
    # A best batch without a PyTorch record cannot pass the speed ratio; on CPU no GPU target applies.
    alone = [_rec("cnn-cifar", "jax", "fused", "bf16", 256, 300_000)]
    (c1, c2) = report.acceptance_checks(alone, gpu=True)
    assert c1["pass"] and c2["value"] is None and not c2["pass"] and "no PyTorch record" in c2["check"]
    assert report.acceptance_checks(recs, gpu=False) == []


# ------------------------------------------------------------------------------------------------
# --dump-hlo, --profile
# ------------------------------------------------------------------------------------------------

def test_dump_hlo_per_runner_with_its_matmul_precision(tmp_path):
    """fp32 runners are compiled under matmul precision "highest" (so their HLO says so), tf32 under the
    default, whatever the session's default is; each compiled runner's optimised HLO is written, and
    it is the Trainer's program: its train period (fused, pmap) or its data step (step-loop)."""
    hlo = tmp_path / "hlo"
    rc = _run(["--suite", "mlp-toy", "--frameworks", "jax", "--modes", "step-loop,fused,pmap", "--precision", "fp32,tf32",
               "--steps", "2", "--windows", "1", "--warmup", "0", "--dump-hlo", str(hlo), "--out", str(tmp_path)])
    assert rc == 0
    recs = json.loads((tmp_path / "bench" / "bench.json").read_text())["records"]
    names = {f"mlp-toy-{m}-{p}-b30" for m in ("step-loop", "fused", "pmap") for p in ("fp32", "tf32")}
    assert {f.name for f in hlo.iterdir()} == {f"{n}.hlo.txt" for n in names}
    module = {"step-loop": "jit_data_step", "fused": "jit_train_period", "pmap": "jit__fun"}
    for r in recs:
        path = hlo / f"{run_name(Record(**r))}.hlo.txt"
        text = path.read_text()
        assert r["extra"]["hlo"] == {"path": str(path), "bytes": path.stat().st_size}
        assert text.startswith(f"HloModule {module[r['mode']]}") and " dot(" in text, text[:80]
        # The toy MLP's step has 5 dots (2 forward, 3 backward: none for the input's gradient).
        assert text.count("operand_precision={highest,highest}") == (5 if r["precision"] == "fp32" else 0), path.name
        assert r["settings"]["matmul_precision"] == TABLE[r["precision"]].matmul
        assert "profile" not in r["extra"]


def test_profile_traces_one_window_of_the_chosen_runners(tmp_path):
    prof = tmp_path / "prof"
    rc = _run(["--suite", "mlp-toy", "--frameworks", "jax", "--modes", "step-loop,fused", "--precision", "fp32,tf32",
               "--steps", "3", "--windows", "1", "--warmup", "0", "--profile", str(prof),
               "--profile-only", "mlp-toy-fused-*,nothing-*", "--out", str(tmp_path)])
    assert rc == 0
    doc = json.loads((tmp_path / "bench" / "bench.json").read_text())
    assert doc["settings"]["profile_only"] == ["mlp-toy-fused-*", "nothing-*"]
    assert sorted(p.name for p in prof.iterdir()) == ["mlp-toy-fused-fp32-b30", "mlp-toy-fused-tf32-b30"]
    for r in doc["records"]:
        if r["mode"] != "fused":
            assert "profile" not in r["extra"]
            continue
        d = prof / f"mlp-toy-fused-{r['precision']}-b30"
        (xplane,) = d.rglob("*.xplane.pb")
        files = [f for f in d.rglob("*") if f.is_file()]
        assert r["extra"]["profile"] == {"path": str(d), "steps": 3, "files": len(files),
                                         "bytes": sum(f.stat().st_size for f in files)}
        # The profiled window ran the trainer's compiled period.
        assert b"train_period" in xplane.read_bytes()


# ------------------------------------------------------------------------------------------------
# PyTorch (skipped where it is not installed)
# ------------------------------------------------------------------------------------------------

def test_torch_settings_are_recorded(tmp_path):
    torch = pytest.importorskip("torch")
    from torch.optim.optimizer import _get_fused_kernels_supported_devices

    rc = _run(["--suite", "mlp-cifar", "--frameworks", "torch", "--modes", "eager", "--precision", "fp32",
               "--batch-size", "32", "--steps", "2", "--windows", "1", "--warmup", "0", "--out", str(tmp_path)])
    assert rc == 0
    (rec,) = json.loads((tmp_path / "bench" / "bench.json").read_text())["records"]
    cuda = torch.cuda.is_available()
    # fp32 is full fp32: TF32 off on a GPU (None: no such switch on CPU).
    assert rec["settings"] == {"channels_last": False, "cudnn_benchmark": cuda, "tf32": False if cuda else None,
                               "fused_adamw": "cuda" in _get_fused_kernels_supported_devices() if cuda else
                               "cpu" in _get_fused_kernels_supported_devices(),
                               "autocast": None, "compile_mode": None}


def test_torch_rows_time_the_torch_backends_own_step(monkeypatch):
    """A PyTorch window is TorchBackend.train on the window's batches, for the twin the experiment builds
    (rnn's recipe through base.from_jax, as rnn.make_backend does), from its JAX model's initial weights."""
    torch = pytest.importorskip("torch")
    from train.backends import base
    from train.backends.torch_backend import TorchBackend
    from train.bench.jax_runner import jax_setup
    from train.bench.suites import train_arrays
    from train.bench.torch_runner import torch_runners
    from train.experiments import rnn

    wl = make_workload("rnn-palindrome", gpu=False, quick=True, seed=0, steps=3)
    setup = jax_setup(wl, "fp32")
    calls, real = [], TorchBackend.train

    def train(self, idx):
        calls.append((self, np.asarray(idx)))
        return real(self, idx)
    monkeypatch.setattr(TorchBackend, "train", train)
    (runner,) = torch_runners(wl, precisions=["fp32"], modes=["eager"], jax_model=lambda p: setup.model)
    runner.window()
    (first_b, first), (b, window) = calls
    assert b is first_b and b.steps == 4 and runner.record.steps_per_window == 3
    np.testing.assert_array_equal(first, wl.idx[:1])
    np.testing.assert_array_equal(window, wl.idx)
    # The experiment's own twin, from its eagerly built JAX model: the same weights, up to the few roundings
    # (<= 4) in which the bench's one-program initialisation may differ. Each is u of the draw's intermediate
    # -b + 2b * U, as large as the range 2b; every bound here is b = 1/sqrt(fan_in), fan_in >= hidden.
    span = 2 / np.sqrt(wl.cfg.hidden)
    mine = wl.spec.torch(wl, wl.cfg, setup.model)
    ref = base.from_jax("torch", rnn.build_model(wl.cfg), rnn.recipe(wl.cfg, len(wl.train_y) // wl.batch), train_arrays(wl))
    assert type(mine.model) is type(ref.model) and type(mine.opt) is type(ref.opt) and mine.clip_norm == 10.0
    for (name, a), (_, w) in zip(mine.model.state_dict().items(), ref.model.state_dict().items()):
        np.testing.assert_allclose(a.numpy(), w.numpy(), rtol=0, atol=4 * U32 * span,
                                   err_msg=name)


def test_torch_tf32_switch():
    torch = pytest.importorskip("torch")
    from train.backends import torch_models as tm

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


def test_fused_adamw_takes_the_experiments_adamw_step():
    """fuse_adamw swaps the CIFAR twin's AdamW for the same AdamW in one kernel: the same settings, and a first
    step from the same weights and gradients that differs by rounding only."""
    pytest.importorskip("torch")
    import dataclasses

    from train.bench import torch_options
    from train.bench.jax_runner import jax_setup

    wl = make_workload("mlp-cifar", gpu=False, quick=True, seed=0, batch=16, steps=1)
    wl.cfg = dataclasses.replace(wl.cfg, hidden="16")
    setup = jax_setup(wl, "fp32")
    plain, fused = (wl.spec.torch(wl, wl.cfg, setup.model) for _ in range(2))
    assert torch_options.fuse_adamw(fused) is True and fused.opt.defaults["fused"]
    assert {k: v for k, v in fused.opt.defaults.items() if k != "fused"} == \
        {k: v for k, v in plain.opt.defaults.items() if k != "fused"}
    assert plain.train(wl.idx)["loss"] == fused.train(wl.idx)["loss"]     # the same forward, before the step
    # One AdamW update of each weight: about ten roundings in either kernel, each u of |w| or of the step (<= lr).
    for a, b in zip(plain.model.parameters(), fused.model.parameters()):
        np.testing.assert_allclose(b.detach().numpy(), a.detach().numpy(), rtol=0,
                                   atol=10 * U32 * (a.abs().max().item() + wl.cfg.lr))
