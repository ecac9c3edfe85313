"""scripts/device_run.sh: the plan fits the GPU window by the last GPU run's numbers, a step killed
midway still leaves a valid tar with the earlier steps, and `all --dry-run` runs every step at tiny
sizes on this machine, so the script cannot rot."""

import json
import os
import re
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import device_plan as P  # noqa: E402
import device_run as D  # noqa: E402


def _plan(tmp_path, dry=False):
    return P.steps(sys.executable, tmp_path / "work", "synthetic:512", dry)


def test_the_plan_fits_540_s_with_the_headline_steps_and_estimates_from_the_reference(tmp_path):
    plan = _plan(tmp_path)
    planned = P.fit(plan)
    assert sum(s.estimate.seconds for s in planned) <= P.PLAN_S <= P.LIMIT_S - 60
    # The most valuable steps, in the order, are all planned.
    assert [s.name for s in plan[:5]] == ["env", "bench rnn b128", "bench cnn b256", "report toy,mlp,cnn,t19", "tests"]
    assert all(s in planned for s in plan if s.headline)
    # Estimates are read from the committed reference run, not typed in: the RNN group's is its
    # recorded group time plus its unrecorded runners, so it exceeds the record.
    log = (ROOT / "results/reference-gpu/check/check.log").read_text()
    assert "rnn at batch 128 took 17.1 s" in log and plan[1].estimate.seconds > 17.1
    assert all(s.estimate.source.startswith(("reference", "no record")) for s in plan)
    text = P.describe(plan)
    assert "[planned]" in text and "[if time is left]" in text and f"of {P.PLAN_S} s" in text


def test_a_step_never_runs_into_the_planned_steps_after_it(tmp_path):
    plan = [P.Step(n, "check", ["true"], P.Estimate(e, "no record")) for n, e in (("a", 100), ("b", 300), ("c", 200))]
    planned = P.fit(plan, 450)
    assert [s.name for s in planned] == ["a", "b"]
    assert D.limit_for(0, plan, planned, 450, False) == 150      # the room left after b's 300 s
    assert D.limit_for(0, plan, planned, 900, False) == 100 * D.SLACK + D.PAD_S
    assert D.limit_for(1, plan, planned, 320, False) == 320      # c is not planned: b may take all
    assert D.limit_for(1, plan, planned, 5, False) == 0
    assert D.limit_for(2, plan, planned, 150, False) == 0      # unplanned, and too little time for it
    assert D.limit_for(2, plan, planned, 250, False) == 250


def _fake_plan(work: Path, sleep_s: float):
    write = "import pathlib,sys; p=pathlib.Path(sys.argv[1]); p.parent.mkdir(parents=True, exist_ok=True); p.write_text('done')"
    return [P.Step("first", "check", [sys.executable, "-c", write, str(work / "first" / "bench.json")], P.Estimate(5, "no record")),
            P.Step("slow", "check", [sys.executable, "-c", f"import time; print('started', flush=True); time.sleep({sleep_s})"],
                   P.Estimate(1, "no record"))]


def _members(tar_path):
    with tarfile.open(tar_path) as t:
        return {n.removeprefix("./"): t for n in t.getnames()}, t


def test_a_step_killed_at_its_limit_leaves_a_valid_tar_with_the_earlier_steps(tmp_path, monkeypatch):
    monkeypatch.setattr(D, "SLACK", 1.0)     # the slow step's limit: its estimate, 1 s
    monkeypatch.setattr(D, "PAD_S", 0)
    monkeypatch.setattr(D, "GRACE_S", 1)
    plan = _fake_plan(tmp_path / "work", 600)
    rc = D.run_plan(plan, tmp_path / "work", tmp_path / "out", dry=False, budget=60)
    assert rc == 1
    assert sorted(os.listdir(tmp_path / "out")) == ["device.log", "device.tar.gz"]
    with tarfile.open(tmp_path / "out" / "device.tar.gz") as t:
        assert t.extractfile("./first/bench.json").read() == b"done"
        log = t.extractfile("./device.log").read().decode()
        assert t.extractfile("./failed.txt").read().decode().startswith("slow (exit")
    assert "== slow: exit" in log and "interrupted at its limit" in log


def test_a_command_killed_mid_step_still_returned_the_earlier_steps(tmp_path):
    """The device kills the whole command at its limit: the tar written after the last finished step
    is what comes back, whole."""
    code = (f"import sys; sys.path.insert(0, {str(ROOT / 'scripts')!r}); import device_run as D, device_plan as P\n"
            "from pathlib import Path\nimport test_device_run as T\n")
    script = tmp_path / "drive.py"
    script.write_text(code + f"D.run_plan(T._fake_plan(Path({str(tmp_path / 'work')!r}), 600), Path({str(tmp_path / 'work')!r}), "
                             f"Path({str(tmp_path / 'out')!r}), dry=True)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    p = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE, text=True, start_new_session=True)
    for line in p.stdout:
        if line.startswith("== slow ("):
            break
    time.sleep(1)
    os.killpg(p.pid, 9)
    p.wait()
    with tarfile.open(tmp_path / "out" / "device.tar.gz") as t:
        assert t.extractfile("./first/bench.json").read() == b"done"
        assert "== first: exit 0" in t.extractfile("./device.log").read().decode()


def test_profiles_too_large_to_return_stay_behind(tmp_path, monkeypatch):
    monkeypatch.setattr(D, "MAX_MEMBER", 1000)
    work, out = tmp_path / "work", tmp_path / "out"
    (work / "profile" / "run").mkdir(parents=True)
    (work / "profile" / "run" / "big.pb").write_bytes(os.urandom(5000))
    (work / "profile" / "run" / "small.json").write_text("{}")
    (work / "results" / "checkpoints").mkdir(parents=True)
    (work / "results" / "checkpoints" / "c").write_text("x")
    out.mkdir()
    D.write_tar(work, out)
    with tarfile.open(out / "device.tar.gz") as t:
        names = {n.removeprefix("./") for n in t.getnames()}
        assert "profile/run/small.json" in names and "profile/run/big.pb" not in names
        assert not any("checkpoints" in n for n in names)
        assert "profile/run/big.pb (5000 bytes)" in t.extractfile("./left-out.txt").read().decode()
    monkeypatch.setattr(D, "MAX_RETURN", 100)    # still too large: profiles and HLO dumps go whole
    D.write_tar(work, out)
    with tarfile.open(out / "device.tar.gz") as t:
        assert not any(n.removeprefix("./").startswith("profile") for n in t.getnames())


def test_pack_builds_the_archive_and_a_missing_folder_is_a_usage_error(tmp_path):
    src = tmp_path / "cifar10-jpg"
    for split in ("train", "test"):
        (src / split / "0").mkdir(parents=True)
        (src / split / "0" / "a.jpg").write_bytes(b"jpg")
    dest = tmp_path / "data" / "cifar10-jpg.tar.gz"
    assert D.pack_cifar(src, dest) == 0
    with tarfile.open(dest) as t:
        assert "cifar10-jpg/test/0/a.jpg" in t.getnames()
    assert D.pack_cifar(tmp_path / "nope", dest) == 2


# `all --dry-run` in three parts that xdist runs side by side (--steps, numbered as `plan` prints them),
# each about a third of the steps' time; together every step, once (checked below).
DRY_GROUPS = {"env+rnn+report": [1, 2, 4, 10, 11, 14], "cnn+profiles": [3, 6, 12, 13], "more+variants": [5, 7, 8, 9, 15]}
DRY_BENCHES = {"env+rnn+report": {"bench-rnn128"},
               "cnn+profiles": {"bench-cnn256", "bench-cnn256-more", "bench-cnn1024", "bench-rnn8192"},
               "more+variants": {"bench-rnn128-more", "bench-cnn256-variants", "bench-rnn128-variants", "bench-mlp256"}}


def test_the_dry_run_parts_are_every_step_once(tmp_path):
    plan = P.steps(sys.executable, tmp_path, "synthetic:512", True)
    assert sorted(i for g in DRY_GROUPS.values() for i in g) == list(range(1, len(plan) + 1))
    benches = {Path(s.argv[s.argv.index("--out") + 1]).name for s in plan if s.stage == "bench"}
    assert set().union(*DRY_BENCHES.values()) == benches
    for name, group in DRY_GROUPS.items():
        assert {Path(plan[i - 1].argv[plan[i - 1].argv.index("--out") + 1]).name for i in group
                if plan[i - 1].stage == "bench"} == DRY_BENCHES[name]


def test_a_dry_repeat_copies_the_earlier_output_or_run_alone_runs_its_command(tmp_path):
    same = [sys.executable, str(ROOT / "scripts" / "dry_same.py")]
    write = [sys.executable, "-c", f"open({str(tmp_path / 'ran')!r}, 'w').write('ran')"]
    (tmp_path / "a" / "bench").mkdir(parents=True)
    (tmp_path / "a" / "bench" / "bench.json").write_text("{}")
    p = subprocess.run([*same, "step a", str(tmp_path / "a"), str(tmp_path / "b"), "--", *write], capture_output=True, text=True)
    assert p.returncode == 0 and "dry: at dry size the same command as step a" in p.stdout
    assert (tmp_path / "b" / "bench" / "bench.json").read_text() == "{}" and not (tmp_path / "ran").exists()
    p = subprocess.run([*same, "step a", str(tmp_path / "nope"), "--", *write], capture_output=True, text=True)
    assert p.returncode == 0 and (tmp_path / "ran").read_text() == "ran"
    p = subprocess.run([*same, "step a", "--", *write], capture_output=True, text=True)
    assert p.returncode == 2 and p.stderr.startswith("error: ")


def test_bad_steps_are_a_usage_error_and_nothing_is_written(tmp_path):
    for steps in ("0", "2,99", "x", ""):
        assert D.main(["all", f"--steps={steps}", "--dry-run", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()


@pytest.mark.slow(longest=True)
@pytest.mark.full  # every GPU step at tiny sizes, tens of processes: `make test-all` (CI)
@pytest.mark.parametrize("group", sorted(DRY_GROUPS))
def test_device_run_all_dry_run(tmp_path, group):
    env = {**os.environ, "PYTHON": sys.executable, "JAX_PLATFORMS": "cpu"}
    steps = ",".join(map(str, DRY_GROUPS[group]))
    p = subprocess.run(["bash", str(ROOT / "scripts" / "device_run.sh"), "all", f"--steps={steps}", "--dry-run",
                        str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert sorted(os.listdir(tmp_path)) == ["device.log", "device.tar.gz"]
    with tarfile.open(tmp_path / "device.tar.gz") as t:
        names = {n.removeprefix("./") for n in t.getnames()}
        benches = {n.split("/")[0]: json.load(t.extractfile("./" + n)) for n in names if n.endswith("bench/bench.json")}
        read = lambda n: t.extractfile("./" + n).read().decode() if n in names else None  # noqa: E731
        # A step's log, by its name (logs/NN-NAME.log, as device_run.run_plan names it).
        logs = {n: read(n) for n in names if n.startswith("logs/")}
        step_log = lambda name: "".join(text for n, text in logs.items() if n.endswith(  # noqa: E731
            "-" + name.replace(" ", "-").replace(",", "+") + ".log"))
        report, env_log, log, failed = read("results/REPORT.md"), read("logs/01-env.log"), read("device.log"), read("failed.txt")
    assert failed.strip() == "" and "planned" in log.splitlines()[0]
    assert len(log.split("\n== done in")[0].split("\n== wrote ")) == len(DRY_GROUPS[group]) + 1   # every step ran
    assert set(benches) == DRY_BENCHES[group]
    assert all(b["partial"] is False for b in benches.values())
    # Dry benches keep JAX's persistent cache on: its programs were looked up in it.
    assert {r["extra"]["persistent_cache"] for b in benches.values() for r in b["records"]
            if r["framework"] == "jax" and not r["skipped"]} <= {"hit", "miss"}
    # A dry repeat (P.dry_repeats) names the earlier step and holds its bench folder.
    step_of = {P.out_name(s): s.name.split(" (")[0] for s in P.steps(sys.executable, tmp_path, "synthetic:512", True)}
    for later, earlier in P.DRY_SAME_BENCH.items():
        if later in benches:
            assert benches[later] == benches[earlier]
            assert "dry: at dry size the same command as" in step_log(step_of[later])
    assert not any("checkpoints" in n for n in names)
    if group == "env+rnn+report":
        assert '"versions"' in env_log
        assert "## Part 1, Tasks 1-2" in report and "## Part 3" in report
        assert "results/mlp-cifar/plain-fp32-s0/summary.json" in names
        # The first later report call re-renders from the first one's runs; the next ones repeat it.
        assert re.search(r"; [1-9]\d* runs reused\)", step_log("report toy,mlp,cnn,t19,sweep"))
        assert "dry: at dry size the same command as" in step_log("report toy,mlp,cnn,t19,sweep,lstm")
        assert "dry: at dry size the same command as" in step_log("report all")
    if group == "more+variants":
        variants = {r["mode"]: r for r in benches["bench-rnn128-variants"]["records"] if not r["skipped"]}
        assert set(variants) == {"fused", "fused-cb-off", "fused-cb-loop", "fused-cb-unroll"}
        assert {r["extra"]["exact_vs_fused"]["verdict"] for m, r in variants.items() if m != "fused"} <= {
            "bitwise", "within run-to-run noise"}   # a GPU's atomics make two runs of one program differ
    if group == "cnn+profiles":
        cnn = [r for r in benches["bench-cnn256"]["records"] if not r["skipped"]]
        assert {r["framework"] for r in cnn if r["utilisation"]} == {"jax", "torch"}
        assert any(n.startswith("hlo/") for n in names) and any(n.startswith("profile/") for n in names)
