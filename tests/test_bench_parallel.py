"""``bench --parallel pmap,shard_map,jit``: the data-parallel paths side by side, on simulated CPU devices
(a child process, as on any machine with fewer devices than asked for). One record per path and device
count; their compile stages, per-device memory and collectives come from the compiled programs; the
paths' ratios are the records' own paired windows; bench.md's table and the scaling curve have them all.

No assertion depends on how fast anything ran.
"""

import json
import statistics

import pytest

from conftest import run_bench

from train.bench.cli import with_parallel
from train.bench.records import PARALLEL_MODES
from train.bench.report import fmt_time

# The paths on 1, 2 and 4 simulated devices, in a child process: `make test-all` (CI), not `make test`.
pytestmark = pytest.mark.full

PATHS = list(PARALLEL_MODES)
BATCH, STEPS = 32, 2


def _run(argv):
    return run_bench(argv)


@pytest.fixture(scope="module")
def paths_run(tmp_path_factory):
    """The acceptance command (``--devices 1,2,4 --parallel pmap,shard_map,jit --quick``) at the toy's
    size on 1 and 4 devices: strong scaling at batch 32, weak at 4 x 32."""
    out = tmp_path_factory.mktemp("paths")
    rc = _run(["--suite", "mlp-toy", "--quick", "--devices", "1,4", "--parallel", ",".join(PATHS),
               "--frameworks", "jax", "--modes", "fused", "--batch-size", str(BATCH), "--steps", str(STEPS),
               "--windows", "2", "--warmup", "0", "--out", str(out)])
    d = out / "bench"
    return rc, json.loads((d / "bench.json").read_text()), (d / "bench.md").read_text(), d


def _median_ratio(base, other):
    return statistics.median(b / o for b, o in zip(base["window_step_s"], other["window_step_s"]))


@pytest.mark.slow
def test_every_path_on_every_device_count(paths_run):
    rc, doc, table, d = paths_run
    assert rc == 0 and doc["settings"]["modes"] == ["fused", *PATHS] and doc["settings"]["pmap_child_devices"] == 4
    recs = {(r["mode"], r["devices"], r["batch_size"]): r for r in doc["records"]}
    want = {("fused", 1, BATCH)} | {(m, n, BATCH) for m in PATHS for n in (1, 4)} | {(m, 4, 4 * BATCH) for m in PATHS}
    assert set(recs) == want and len(doc["records"]) == len(want)
    for (mode, n, batch), r in recs.items():
        assert not r["skipped"], r["note"]
        # The paths ran in the child with simulated devices, plain jit (fused) here.
        assert (r["extra"].get("process") == "child process, 4 simulated CPU devices") == (mode != "fused")
        # Compile stages: the trainer's own calls, pmap's trace and lower being one.
        stages = r["extra"]["compile_stages"]
        assert set(stages) == ({"trace+lower", "compile"} if mode == "pmap" else {"trace", "lower", "compile"})
        assert all(v > 0 for v in stages.values())
        # Collectives per step, counted in the compiled HLO: the gradients' all-reduce wherever there are
        # several devices, none in plain jit; the per-device programs (pmap, shard_map) keep theirs on one device.
        ops = r["extra"]["hlo_ops"]
        assert ops["collectives"] == sum(ops["collective_ops"].values())
        if n == 4:
            assert ops["collective_ops"].get("all-reduce", 0) >= 1
        if mode in ("fused", "jit") and n == 1:
            assert ops["collectives"] == 0
        # A row of the paths table per record.
        row = f"| mlp-toy | fp32 | {batch} | {mode} | {n} | {fmt_time(r['step_s'])} | {r['examples_per_s']:,.0f} |"
        assert row in table, row
    # Memory is per device: the state and data are whole on each device, the batch indices [K, B] split,
    # so 4 devices' arguments are 1 device's less 3/4 of the int32 indices, exactly, on every path.
    for mode in PATHS:
        one, four = (recs[(mode, n, BATCH)]["memory"]["argument_bytes"] for n in (1, 4))
        assert one - four == 4 * STEPS * (BATCH - BATCH // 4), mode


@pytest.mark.slow
def test_path_ratios_are_the_records_paired_windows(paths_run):
    _, doc, table, _ = paths_run
    recs = {(r["mode"], r["devices"], r["batch_size"]): r for r in doc["records"]}
    ratios = doc["ratios"][f"mlp-toy/fp32/b{BATCH}"]
    # Paired with pmap on as many devices, and with the same path on one device; fused ran in another process,
    # so it is paired with none of them.
    assert set(ratios["path_vs_pmap"]) == {f"{m} d{n}" for m in PATHS[1:] for n in (1, 4)}
    assert set(ratios["path_scaling"]) == set(PATHS)
    for m in PATHS:
        for n in (1, 4):
            if m != "pmap":
                got = ratios["path_vs_pmap"][f"{m} d{n}"]
                assert got == round(_median_ratio(recs[("pmap", n, BATCH)], recs[(m, n, BATCH)]), 3)
                assert recs[(m, n, BATCH)]["extra"]["vs_pmap"] == got
        assert ratios["path_scaling"][m] == {"4": round(_median_ratio(recs[(m, 1, BATCH)], recs[(m, 4, BATCH)]), 3)}
    weak = doc["ratios"][f"mlp-toy/fp32/b{4 * BATCH}"]["path_vs_pmap"]
    assert set(weak) == {"shard_map d4", "jit d4"}


@pytest.mark.slow
def test_scaling_curve_has_a_line_per_path(paths_run):
    _, doc, table, d = paths_run
    curves = doc["curves"]["scaling"]
    assert sorted((c["mode"], c["kind"]) for c in curves) == sorted((m, k) for m in PATHS for k in ("strong", "weak"))
    for c in curves:
        assert [p["devices"] for p in c["points"]] == [1, 4] and c["points"][0]["efficiency"] == 1.0
        assert f"| mlp-toy | fp32 | {c['mode']} | {c['kind']} | 4 |" in table
    assert (d / "scaling_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_parallel_flag_picks_the_data_parallel_modes():
    modes = ["step", "fused", "pmap", "eager"]
    assert with_parallel(modes, None) == modes                       # default: pmap, as --modes says
    assert with_parallel(modes, ["jit", "pmap", "jit"]) == ["step", "fused", "eager", "jit", "pmap"]
    assert with_parallel(["fused"], ["shard_map"]) == ["fused", "shard_map"]
    with pytest.raises(SystemExit) as e:
        _run(["--parallel", "pmap,vmap"])
    assert e.value.code == 2
