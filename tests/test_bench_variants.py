"""The bench's JAX variants (the fused period compiled with GPU command-buffer options) and its count
of kernels per step from the optimised HLO."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from train.bench import jax_variants
from train.bench.hlo_stats import computations, op_counts, step_ops
from train.bench.jax_runner import jax_runner, jax_setup
from train.bench.records import DEFAULT_MODES, JAX_VARIANT_MODES, MODES
from train.bench.workloads import make_workload

# A fused period by hand: a loop whose body runs a fusion, a library GEMM, a transpose layout
# assignment left behind, an asynchronous all-reduce and the trip counter's add.
HLO = """HloModule jit_train_period, is_scheduled=true

%fc (a: f32[4]) -> f32[4] {
  %a = f32[4]{0} parameter(0)
  ROOT %n = f32[4]{0} negate(%a)
}

%body (p: (s32[], f32[4])) -> (s32[], f32[4]) {
  %p = (s32[], f32[4]{0}) parameter(0)
  %i = s32[] get-tuple-element(%p), index=0
  %x = f32[4]{0} get-tuple-element(%p), index=1
  %f = f32[4]{0} fusion(%x), kind=kLoop, calls=%fc, metadata={op_name="jit(f)/neg(x)"}
  %g = f32[4]{0} custom-call(%f), custom_call_target="__cublas$gemm"
  %t = f32[4]{0} transpose(%g), dimensions={0}
  %s = f32[4]{0} all-reduce-start(%t), replica_groups={}, to_apply=%fc
  %d = f32[4]{0} all-reduce-done(%s)
  %one = s32[] constant(1)
  %i1 = s32[] add(%i, %one)
  ROOT %r = (s32[], f32[4]{0}) tuple(%i1, %d)
}

%cond (p: (s32[], f32[4])) -> pred[] {
  %p = (s32[], f32[4]{0}) parameter(0)
  %i = s32[] get-tuple-element(%p), index=0
  %k = s32[] constant(5)
  ROOT %lt = pred[] compare(%i, %k), direction=LT
}

ENTRY %main (x: f32[4]) -> f32[4] {
  %x = f32[4]{0} parameter(0)
  %z = s32[] constant(0)
  %init = (s32[], f32[4]{0}) tuple(%z, %x)
  %w = (s32[], f32[4]{0}) while(%init), condition=%cond, body=%body
  ROOT %out = f32[4]{0} get-tuple-element(%w), index=1
}
"""


def test_the_loop_body_is_counted_launch_by_launch():
    assert set(computations(HLO)) == {"fc", "body", "cond", "main", "ENTRY"}
    ops = step_ops(HLO, fused=True)
    # fusion, gemm, transpose, all-reduce (its -done half is not a launch), add
    assert ops["where"] == "loop body body"
    assert (ops["kernels"], ops["fusions"], ops["custom_calls"], ops["transposes"],
            ops["collectives"], ops["loops"]) == (5, 1, 1, 1, 1, 0)
    assert ops["custom_call_targets"] == {"__cublas$gemm": 1} and ops["other"] == ["add"]
    entry = step_ops(HLO, fused=False)
    assert (entry["where"], entry["kernels"], entry["loops"]) == ("entry", 1, 1)


def test_a_compiled_scan_is_found_and_counted():
    def f(w, x):
        def body(c, _):
            return c - 0.1 * jax.grad(lambda w: jnp.sum(jnp.tanh(x @ w) ** 2))(c), None
        return jax.lax.scan(body, w, None, length=5)[0]
    text = jax.jit(f).lower(jnp.ones((8, 8)), jnp.ones((4, 8))).compile().as_text()
    fused, entry = step_ops(text, fused=True), step_ops(text, fused=False)
    assert fused["where"].startswith("loop body") and fused["loops"] == 0 and fused["kernels"] >= 2
    assert entry["loops"] == 1
    assert op_counts([])["kernels"] == 0


def test_variants_are_bench_modes_asked_for_by_name_and_compile_here():
    assert tuple(jax_variants.VARIANTS) == JAX_VARIANT_MODES
    assert set(JAX_VARIANT_MODES) <= set(MODES) and not set(JAX_VARIANT_MODES) & set(DEFAULT_MODES)
    f = jax.jit(lambda x: jnp.sin(x) * 2)
    for options in jax_variants.VARIANTS.values():   # an option this jaxlib lacks is an error
        f.lower(jnp.ones(3)).compile(compiler_options=options)


class _State:
    def __init__(self, params):
        self.params = params


def test_exactness_is_held_to_the_measured_noise_floor():
    p = [np.arange(6.0).reshape(2, 3), np.ones(4)]
    ref = jax_variants.Reference([x.copy() for x in p], noise=1e-6)
    assert jax_variants.exactness(_State(p), ref)["verdict"] == "bitwise"
    near = [p[0] + 5e-7, p[1]]
    assert jax_variants.exactness(_State(near), ref)["verdict"] == "within run-to-run noise"
    far = [p[0], p[1] - 1e-3]
    out = jax_variants.exactness(_State(far), ref)
    assert out["verdict"] == "differs" and out["max_abs_diff"] == pytest.approx(1e-3)
    assert jax_variants.exactness(_State(p), None)["verdict"].startswith("unchecked")


def test_a_variant_trains_as_fused_does():
    wl = make_workload("mlp-toy", gpu=False, quick=True, seed=0, steps=3)
    setup, refs = jax_setup(wl, "fp32"), {}
    fused = jax_runner(setup, "fused", refs=refs)
    assert refs["fp32"].noise >= 0 and "kernels" in fused.record.extra["hlo_ops"]
    variant = jax_runner(setup, "fused-cb-loop", refs=refs)
    ex = variant.record.extra["exact_vs_fused"]
    assert ex["verdict"] in ("bitwise", "within run-to-run noise"), ex
    assert ex["max_abs_diff"] <= ex["noise_floor"]
    assert variant.record.extra["hlo_ops"]["kernels"] > 0


def test_the_gpu_plan_names_the_same_variants():
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import device_plan
    assert device_plan.JAX_VARIANTS == JAX_VARIANT_MODES
    names = [s.name for s in device_plan.steps("python", Path("/tmp/w"), "synthetic", dry=False)]
    assert any("JAX variants" in n for n in names)
