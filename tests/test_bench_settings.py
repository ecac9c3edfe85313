"""``python -m train bench``: batch sweeps, precisions, settings, the acceptance checks, --dump-hlo and
--profile, and the PyTorch runner. No assertion depends on how fast anything ran."""

import argparse
import json

import numpy as np
import pytest

from tolerances import U32, sum_rel_error
from train.bench import report, run as bench_run
from train.bench.cli import batch_sizes, precisions
from train.bench.records import RECIPE_BATCH, Record, run_name, skipped
from train.bench.workloads import GPU_TRAIN_IMAGES, make_workload
from train.experiments import cifar
from train.errors import UsageError

from test_bench import _rec, _run, _windows

# ------------------------------------------------------------------------------------------------
# Batch sweeps, precisions, settings, acceptance checks
# ------------------------------------------------------------------------------------------------

def test_batch_sizes_parse_per_suite_and_for_all():
    spec = batch_sizes("256, cnn:1024,rnn:128,cnn:256")
    assert spec == [(None, 256), ("cnn", 1024), ("rnn", 128), ("cnn", 256)]
    assert bench_run.suite_batches("cnn", spec) == [256, 1024]       # in order, no repeats
    assert bench_run.suite_batches("rnn", spec) == [256, 128]
    assert bench_run.suite_batches("toy", [("cnn", 8)]) == [None]     # none applies: the suite's default
    for bad in ("0", "cnn:x", "gan:64", ","):
        with pytest.raises(argparse.ArgumentTypeError):
            batch_sizes(bad)


def test_workload_sizes_and_configs():
    gpu = make_workload("cnn", gpu=True, quick=False, seed=0)
    assert gpu.batch == RECIPE_BATCH["cnn"] == 256 and len(gpu.train_x) == GPU_TRAIN_IMAGES == 50_000
    assert gpu.idx.shape == (gpu.steps, 256) and gpu.idx.max() < 50_000 and len(set(gpu.idx[0])) == 256
    big = make_workload("cnn", gpu=True, quick=False, seed=0, batch=1024)
    # Four times the batch, a quarter of the steps (at least 10), so a window's work stays about the same.
    assert big.steps == max(min(gpu.steps, 10), round(gpu.steps / 4)) and big.idx.shape == (big.steps, 1024)
    cpu = make_workload("mlp-cifar", gpu=False, quick=True, seed=0)
    assert len(cpu.train_x) == 2048 and cpu.batch == 256
    # The experiments' own settings: learning rates, hidden sizes, the batch and seed asked for.
    assert (cpu.cfg, cpu.lr, cpu.hidden) == (cifar.mlp_config(batch_size=256, devices=1), 1e-3,
                                             (1024, 512, 256, 256, 128))
    rnn = make_workload("rnn", gpu=False, quick=True, seed=5)
    assert (rnn.lr, rnn.hidden, rnn.cfg.seed, rnn.cfg.input_length, rnn.train_x.shape[1]) == (1e-3, (128,), 5, 15, 15)
    toy = make_workload("toy", gpu=False, quick=True, seed=0)
    assert (toy.lr, toy.hidden, toy.n_classes, toy.cfg.framework) == (0.01, (20,), 2, "jax")
    with pytest.raises(UsageError):
        make_workload("toy", gpu=False, quick=True, seed=0, batch=10_000)


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


def test_precisions_resolve_and_sweep():
    spec = precisions("bf16, tf32,rnn:fp32")
    assert spec == [(None, "bf16"), (None, "tf32"), ("rnn", "fp32")]
    resolve = bench_run.resolve_precisions
    assert resolve(spec, gpu=True, suite="rnn") == ["fp32", "tf32", "bf16"]   # fixed order
    assert resolve(spec, gpu=True, suite="cnn") == ["tf32", "bf16"]
    assert resolve(spec, gpu=False) == ["fp32", "tf32", "bf16"]               # any suite
    auto = precisions("auto")
    assert resolve(auto, gpu=False, suite="cnn") == ["fp32"]
    assert resolve(auto, gpu=True, suite="cnn") == ["tf32", "bf16"]
    assert resolve(precisions("auto,cnn:fp32"), gpu=True, suite="cnn") == ["fp32", "tf32", "bf16"]
    assert bench_run.run_precisions("cnn", 256, ["fp32", "bf16"], ["bf16"]) == ["fp32", "bf16"]
    assert bench_run.run_precisions("cnn", 1024, ["fp32", "bf16"], ["bf16"]) == ["bf16"]
    assert bench_run.run_precisions("cnn", 1024, ["fp32", "bf16"], None) == ["fp32", "bf16"]
    for bad in ("fp16", "cnn:", "gan:fp32", ","):
        with pytest.raises(argparse.ArgumentTypeError):
            precisions(bad)


def test_compile_policy():
    wl = lambda suite, batch: argparse.Namespace(suite=suite, batch=batch)  # noqa: E731
    policy = bench_run.compile_policy
    gpu = policy("auto", gpu=True, quick=False)
    assert gpu(wl("cnn", 256), "bf16") == "" and gpu(wl("rnn", 128), "bf16") == ""
    assert "recipe batch 256" in gpu(wl("cnn", 256), "fp32") and "recipe batch 256" in gpu(wl("cnn", 1024), "bf16")
    assert "--quick" in policy("auto", gpu=False, quick=True)(wl("cnn", 8), "fp32")
    assert policy("auto", gpu=False, quick=False)(wl("cnn", 8), "fp32") == ""
    assert policy("on", gpu=True, quick=True)(wl("cnn", 1024), "fp32") == ""
    assert "off" in policy("off", gpu=True, quick=False)(wl("cnn", 256), "bf16")


def test_settings_text():
    s = {"channels_last": True, "cudnn_benchmark": True, "tf32": True, "fused_adamw": False, "autocast": "bf16",
         "compile_mode": "reduce-overhead", "scan_unroll": 15, "matmul_precision": None}
    assert report.settings_text(s) == ("channels_last, cudnn.benchmark, TF32, no fused AdamW, autocast bf16, "
                                       "compile reduce-overhead, unroll 15")
    assert report.settings_text({"channels_last": False, "fused_adamw": None, "tf32": None}) == ""
    assert report.settings_text({"tf32": False, "matmul_precision": "highest"}) == "no TF32, matmul highest"
    assert report.settings_text({"xla_backend_optimization_level": 0}) == "XLA opt level 0"


def test_batch_summary_recipe_and_best():
    recs = [_rec("cnn", "jax", "fused", "bf16", 256, 150_000), _rec("cnn", "jax", "fused", "bf16", 1024, 250_000),
            _rec("cnn", "jax", "fused", "bf16", 4096, 240_000), _rec("rnn", "torch", "eager", "fp32", 512, 9_000),
            skipped("cnn", "torch", "compiled", "off", precision="bf16", batch_size=1024)]
    # Made-up figures passed through: approx only for float rounding.
    assert report.batch_summary(recs) == [
        {"suite": "cnn", "framework": "jax", "mode": "fused", "precision": "bf16", "devices": 1,
         "batches": [256, 1024, 4096], "recipe_batch": 256, "recipe_examples_per_s": pytest.approx(150_000),
         "best_batch": 1024, "best_examples_per_s": pytest.approx(250_000)},
        {"suite": "rnn", "framework": "torch", "mode": "eager", "precision": "fp32", "devices": 1,
         "batches": [512], "recipe_batch": 128, "recipe_examples_per_s": None,
         "best_batch": 512, "best_examples_per_s": pytest.approx(9_000)}]


def test_gpu_acceptance_checks_compare_with_the_best_torch_at_the_same_batch():
    recs = [_rec("cnn", "jax", "fused", "bf16", 256, 150_000), _rec("cnn", "jax", "fused", "bf16", 1024, 250_000),
            _rec("cnn", "jax", "fused", "fp32", 1024, 900_000),            # fp32 is not what the checks quote
            _rec("cnn", "torch", "eager", "bf16", 256, 50_000), _rec("cnn", "torch", "compiled", "bf16", 256, 60_000),
            _rec("cnn", "torch", "eager", "bf16", 1024, 70_000),
            _rec("cnn", "torch", "compiled", "bf16", 4096, 500_000),        # another batch: not compared
            _rec("rnn", "jax", "fused", "bf16", 128, 600_000), _rec("rnn", "jax", "fused", "bf16", 4096, 400_000)]
    checks = {c["check"]: (c["value"], c["target"], c["pass"]) for c in report.acceptance_checks(recs, gpu=True)}
    assert checks == {
        "cnn: JAX fused bf16 examples/s at batch 256 (recipe)": (150_000, ">= 200,000", False),
        "cnn: JAX fused bf16 / best PyTorch (torch compiled bf16, 60,000/s) at batch 256 (recipe)":
            (2.5, ">= 3", False),
        "cnn: JAX fused bf16 examples/s at batch 1024 (best)": (250_000, ">= 200,000", True),
        "cnn: JAX fused bf16 / best PyTorch (torch eager bf16, 70,000/s) at batch 1024 (best)":
            (round(250 / 70, 4), ">= 3", True),
        "rnn: JAX fused bf16 examples/s at batch 128 (recipe+best)": (600_000, ">= 500,000", True),
    }
    # A best batch without a PyTorch record cannot pass the speed ratio; on CPU no GPU target applies.
    alone = [_rec("cnn", "jax", "fused", "bf16", 256, 300_000)]
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
    rc = _run(["--suite", "toy", "--frameworks", "jax", "--modes", "step-loop,fused,pmap", "--precision", "fp32,tf32",
               "--steps", "2", "--windows", "1", "--warmup", "0", "--dump-hlo", str(hlo), "--out", str(tmp_path)])
    assert rc == 0
    recs = json.loads((tmp_path / "bench" / "bench.json").read_text())["records"]
    names = {f"toy-{m}-{p}-b30" for m in ("step-loop", "fused", "pmap") for p in ("fp32", "tf32")}
    assert {f.name for f in hlo.iterdir()} == {f"{n}.hlo.txt" for n in names}
    module = {"step-loop": "jit_data_step", "fused": "jit_train_period", "pmap": "jit__fun"}
    for r in recs:
        path = hlo / f"{run_name(Record(**r))}.hlo.txt"
        text = path.read_text()
        assert r["extra"]["hlo"] == {"path": str(path), "bytes": path.stat().st_size}
        assert text.startswith(f"HloModule {module[r['mode']]}") and " dot(" in text, text[:80]
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


def test_torch_device_data_gathers_the_windows_batches():
    torch = pytest.importorskip("torch")
    from train.backends import torch_models as tm

    wl = make_workload("cnn", gpu=False, quick=True, seed=0, steps=2)
    d = tm.device_data("cnn", wl.train_x, wl.train_y, wl.idx, device=torch.device("cpu"), mean=wl.mean,
                       std=wl.std)
    assert len(d.idx) == 2
    x, y = d.batch(1)
    np.testing.assert_array_equal(x.numpy(), wl.train_x[wl.idx[1]].transpose(0, 3, 1, 2))   # NCHW
    np.testing.assert_array_equal(y.numpy(), wl.train_y[wl.idx[1]])
    want = (x[:, 0].float() / 255 - wl.mean[0]) / wl.std[0]
    # float32: each value a few roundings (<= 4) apart, then a mean of n = 4 x 32 x 32 of them in any order,
    # relative to the mean of their magnitudes (the mean itself may be near 0).
    np.testing.assert_allclose(d.preprocess(x)[:, 0].mean().item(), want.mean().item(), rtol=0,
                               atol=(4 * U32 + 2 * sum_rel_error(want.numel(), U32)) * want.abs().mean().item())


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


def test_torch_channels_last_and_fused_adamw_train_like_the_plain_step():
    torch = pytest.importorskip("torch")
    from train.backends import torch_models as tm

    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)).permute(0, 3, 1, 2)
    y = torch.as_tensor(rng.integers(0, 10, 8))
    mean, std = np.full(3, 0.5, np.float32), np.full(3, 0.25, np.float32)
    grads, losses = [], []
    for cl in (False, True):
        model, opt, fused = tm.build("cnn", lr=1e-3, seed=0, channels_last=cl)
        assert fused is bool(opt.defaults["fused"]) and opt.defaults["weight_decay"] == 0.01
        pre = tm.make_preprocess("cnn", mean=mean, std=std, device=torch.device("cpu"), channels_last=cl)
        step = tm.make_train_step(model, opt, pre, device_type="cpu")
        losses.append(float(step(x if cl else x.contiguous(), y).detach()))   # the step leaves its gradients
        assert model.features[0].weight.is_contiguous(memory_format=torch.channels_last) == cl
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]).numpy())
    # Same initial weights and batch: the layout changes the memory order, so at worst the order of every
    # sum: a convolution's 3 x 3 x 512 taps forward, a weight gradient's 8 x 32 x 32 positions backward (float32).
    assert losses[1] == pytest.approx(losses[0], rel=sum_rel_error(9 * 512, U32))
    np.testing.assert_allclose(grads[1], grads[0], atol=sum_rel_error(8 * 32 * 32, U32) * np.abs(grads[0]).max())
