"""bench's explanations: FLOPs per step against an analytic count, utilisation against a peak,
memory, spread, curves and scaling efficiency, and profiles that hold the training step's
operations. Made-up records where arithmetic is tested; small real programs elsewhere."""

import jax
import pytest

import train
from train.bench import curves, explain, timing
from train.bench.cost import Peaks, annotate, per_step_cost, table_peak
from train.bench.jax_runner import build_trainer, jax_setup, one_step_cost
from train.bench.records import Record
from train.bench.workloads import make_workload
from train.backends.jax_profiling import trace_events


def _rec(framework, mode, batch, per_s, devices=1, **kw):
    r = timing.finish(Record("mlp-cifar", framework, mode, "fp32", devices, batch, **kw), [batch / per_s] * 3)
    return r


def cnn_training_flops_per_image(in_bounds: bool) -> float:
    """The CNN's convolutions (jax_models/cnn.py: 3x3, padding 1, on 32..2 pixel maps), forward
    2*Cin*Cout*taps per output map and training 3x forward, the first layer 2x (no input gradient).
    ``in_bounds``: only taps inside the image, as XLA counts (a side of S pixels has (3S-2) taps per
    row instead of 3S); else every tap, padding included (the dense count, ~0.92 GFLOP)."""
    from jax_models.cnn import BLOCKS
    total, c_in, size = 0.0, 3, 32
    for block in BLOCKS:
        for c_out in block:
            taps = (3 * size - 2) ** 2 if in_bounds else 9 * size * size
            total += 2 * c_in * c_out * taps * (2 if c_in == 3 else 3)
            c_in = c_out
        size //= 2
    return total + 3 * 2 * 512 * 10   # the linear head


@pytest.mark.parametrize("impl", ["xla", "im2col"])
def test_cnn_flops_per_image_match_the_analytic_count(impl, monkeypatch):
    # Integer arithmetic, against the figure quoted to three digits (0.913e9 rounds to it within 1%).
    assert cnn_training_flops_per_image(False) == pytest.approx(0.915e9, rel=0.01)
    import jax_models.cnn
    monkeypatch.setattr(jax_models.cnn, "resolve_conv_impl", lambda conv_impl, platform=None: impl)
    wl = make_workload("cnn-cifar", gpu=False, quick=True, seed=0, batch=4, steps=1)
    trainer, state, data = build_trainer(jax_setup(wl, "fp32"), "fused")
    # The step at batch 4 and at batch 2: the difference is two images' work, without AdamW's
    # per-step update of the 4.6M parameters (as much as ~20 MFLOP per image at batch 2).
    cost4, cost2 = (one_step_cost(trainer, state, data, wl.idx[:, :b]) for b in (4, 2))
    per_image = (cost4["flops"] - cost2["flops"]) / 2
    # Not rounding but a model's accuracy: batch norm, ReLU, pooling and the loss add about a percent to the
    # convolutions' in-bounds work, and 10% still tells the in-bounds count from the dense one (20-30% apart).
    # im2col's patches hold the padding's zeros: every tap is a multiply, the dense count.
    assert per_image == pytest.approx(cnn_training_flops_per_image(impl == "xla"), rel=0.10)
    assert cost4["bytes_accessed"] > cost2["bytes_accessed"] > 0
    if impl == "xla":
        # Against the dense count: the padding taps (4/9 of the 2x2 maps' taps) are not work to XLA.
        assert 0.70 < per_image / cnn_training_flops_per_image(False) < 0.85
        assert cost4["flops"] / 4 == pytest.approx(cnn_training_flops_per_image(True), rel=0.10)


def test_per_step_cost_whether_xla_counts_the_loop_once_or_per_trip():
    one = {"flops": 10.0, "bytes_accessed": 4.0}
    once = per_step_cost({"flops": 10.5, "bytes_accessed": 5.0}, one, steps=8)
    per_trip = per_step_cost({"flops": 84.0, "bytes_accessed": 40.0}, one, steps=8)
    assert (once["flops"], once["bytes_accessed"]) == (10.5, 5.0)
    assert (per_trip["flops"], per_trip["bytes_accessed"]) == (10.5, 5.0) and "/ 8 steps" in per_trip["source"]
    assert per_step_cost(None, one, 8)["source"].startswith("XLA cost analysis of the lowered")
    assert per_step_cost(None, None, 8) is None


def test_peak_table_and_utilisation():
    # Data-sheet figures, looked up: exact but for the literal's float rounding.
    assert table_peak("NVIDIA H100 80GB HBM3", "bf16") == pytest.approx(989.4e12)
    assert table_peak("NVIDIA H100 PCIe", "tf32") == pytest.approx(378e12)
    assert table_peak("NVIDIA H200", "fp32") == pytest.approx(66.9e12)
    assert table_peak("cpu", "fp32") is None

    class FakePeaks(Peaks):
        def __init__(self):
            self.device = jax.local_devices()[0]

        def get(self, precision):
            return 1e12, "measured: made up"

    jx = _rec("jax", "fused", 256, 2560.0, flops_per_step=1e10)
    pt = _rec("torch", "eager", 256, 1280.0)
    other_batch = _rec("torch", "eager", 128, 1280.0)
    annotate([jx, pt, other_batch], FakePeaks())
    # 1e10 FLOP per step of 0.1 s: 1e11 FLOP/s, 10% of 1 TFLOP/s; PyTorch has half the speed, the same count.
    # Made-up figures: the arithmetic is exact but for float rounding (approx's rel 1e-6).
    assert jx.flops_per_s == pytest.approx(1e11) and jx.utilisation == pytest.approx(0.10)
    assert pt.flops_per_step == 1e10 and pt.utilisation == pytest.approx(0.05)
    assert other_batch.flops_per_step is None and other_batch.utilisation is None
    row = next(line for line in explain.work_table([jx]) if line.startswith("| mlp-cifar"))
    assert "| 10 | 0.1 | 1 (measured) | 10.00% |" in row


def test_spread_of_windows_and_ratios():
    r = timing.finish(Record("mlp-toy", "jax", "fused", batch_size=30), [1.0, 2.0, 3.0, 4.0, 100.0])
    assert (r.step_s, r.step_s_q1, r.step_s_q3) == (3.0, 2.0, 4.0)
    base = Record("s", "numpy", "step", window_step_s=[2.0, 8.0, 3.0], step_s=3.0)
    fast = Record("s", "jax", "fused", window_step_s=[1.0, 2.0, 1.0], step_s=1.0)
    assert timing.paired_ratio(base, fast) == 3.0 and timing.ratio_range(base, fast) == [2.0, 4.0]
    assert timing.ratio_range(base, Record("s", "jax", "fused", window_step_s=[1.0])) is None


def test_batch_and_scaling_curves_of_made_up_records():
    recs = [_rec("jax", "fused", b, t) for b, t in ((64, 1000.0), (256, 3000.0))]
    recs += [_rec("jax", "pmap", 256, 2000.0), _rec("jax", "pmap", 256, 3000.0, devices=2),
             _rec("jax", "pmap", 256, 4000.0, devices=4), _rec("jax", "pmap", 512, 3600.0, devices=2),
             _rec("jax", "pmap", 1024, 6400.0, devices=4)]
    for r in recs[-2:]:
        r.extra["scaling"] = "weak"
    (bc,) = curves.batch_curves(recs)
    assert (bc["mode"], [p["batch"] for p in bc["points"]]) == ("fused", [64, 256])
    assert bc["points"][1]["examples_per_s"] == pytest.approx(3000.0)  # made-up figures: exact arithmetic
    # Another path's records make curves of their own, never joining pmap's.
    recs += [_rec("jax", "shard_map", 256, 2500.0), _rec("jax", "shard_map", 256, 2500.0, devices=2)]
    strong, weak, other = curves.scaling_curves(recs)
    assert (strong["kind"], weak["kind"], strong["mode"], weak["mode"]) == ("strong", "weak", "pmap", "pmap")
    assert (other["mode"], other["kind"], [round(p["efficiency"], 3) for p in other["points"]]) == \
        ("shard_map", "strong", [1.0, 0.5])
    # Efficiency = throughput(N) / (N x throughput(1)), throughput(1) = 2,000/s.
    assert [round(p["efficiency"], 3) for p in strong["points"]] == [1.0, 0.75, 0.5]
    assert [p["batch"] for p in weak["points"]] == [256, 512, 1024]
    assert [round(p["efficiency"], 3) for p in weak["points"]] == [1.0, 0.9, 0.8]
    text = "\n".join(curves.markdown([bc], [strong, weak, other]))
    assert "| mlp-cifar | fp32 | pmap | weak | 4 | 1024 | 6,400 | 0.80 |" in text
    assert "| mlp-cifar | fp32 | shard_map | strong | 2 | 256 | 2,500 | 0.50 |" in text


def test_experiment_profile_holds_the_training_steps_operations(tmp_path):
    """--profile on an experiment traces a steady-state period: the Perfetto trace parses, and its
    events name the compiled training program and operations of its optimised HLO (--dump-hlo)."""
    s = train.run("mlp-toy", out=tmp_path / "out", steps=60, samples=200, framework="jax",
                  profile=tmp_path / "prof", dump_hlo=tmp_path / "hlo")["jax"]
    assert s["profile"]["period"] == 2 and s["profile"]["path"] == str(tmp_path / "prof" / "mlp-toy" / "moons-jax-s0")
    names = {e.get("name", "").removeprefix("end: ") for e in trace_events(s["profile"]["path"])}
    assert any("train_period" in n for n in names)
    hlo = (tmp_path / "hlo" / "mlp-toy" / "moons-jax-s0" / "train.hlo.txt").read_text()
    assert hlo.startswith("HloModule jit_train_period")
    ops = {line.split(" = ")[0].strip().removeprefix("ROOT ").lstrip("%") for line in hlo.splitlines() if " = " in line}
    found = names & ops
    assert any(n.startswith(("dot", "fusion")) or "fusion" in n for n in found), sorted(found)[:10]
