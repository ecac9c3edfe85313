"""What REPORT.md says is what the data and the plan say: one gradient ratio per (cell, T), deviations
with counts computed from the plan, the reproduce command as run."""

import dataclasses
import re

import numpy as np
import pytest

from data.palindrome import make_palindrome_data
from train import report
from train.experiments import mlp_toy, rnn
from train.report import plan as P
from train.report.claims import comparison
from train.report.deviations import deviations, dropped_batches
from train.report.render import init_grad_ratios, rnn_section
from train.report.rerender import report_command

JPG = "folder:/somewhere/cifar10-jpg"


def _sweep(ratios: dict) -> dict:
    """A made-up sweep whose seed k of (cell, T) has dL/dh_1 / dL/dh_T = ratios[(cell, T)][k] at init."""
    runs, summary = [], {}
    for (cell, t), qs in ratios.items():
        for k, q in enumerate(qs):
            runs.append({"cell": cell, "input_length": t, "seed": k, "test_accuracy": 1.0, "train_accuracy": 1.0,
                         "best_test_accuracy": 1.0, "wall_time_s": 1.0, "grad_norms": {"init": [q, 0.5, 1.0]}})
        summary.setdefault(cell, []).append({"input_length": t, "mean": 1.0, "std": 0.0, "min": 1.0, "max": 1.0,
                                             "n": len(qs)})
    cells = list(summary)
    return {"lengths": sorted({t for _, t in ratios}), "cells": cells, "summary": summary, "runs": runs}


def test_grad_ratio_table_and_verdict_quote_the_same_median():
    # Three seeds in an order where first, last and median all differ.
    sweep = _sweep({("vanilla", 5): [3e-1, 2e-1, 1e-1], ("vanilla", 30): [4e-6, 2e-7, 9e-8],
                    ("lstm", 5): [0.9, 0.8, 0.7], ("lstm", 30): [5e-2, 2e-2, 1e-3]})
    plan = P.Plan(quick=False)
    table = "\n".join(rnn_section(plan, {"rnn": {"sweep": sweep}}, P.ROOT))
    rows = dict(((c, int(t)), (float(q), int(n))) for c, t, q, n in
                re.findall(r"^\| (vanilla|lstm) \| (\d+) \| ([\d.e+-]+) \| (\d+) \|$", table, re.M))
    assert rows[("vanilla", 30)] == (float(f"{np.median([4e-6, 2e-7, 9e-8]):.2e}"), 3) == (2e-7, 3)
    assert rows[("lstm", 30)] == (2e-2, 3)
    note = "\n".join(comparison(plan, {"toy": {}, "cifar": {}, "rnn": {}}, P.ROOT, sweep=sweep,
                                ratios=init_grad_ratios(sweep)))
    m = re.search(r"at T=30, dL/dh_1 / dL/dh_T at initialisation is ([\d.e+-]+) for the LSTM vs ([\d.e+-]+)", note)
    assert (float(m[1]), float(m[2])) == (2e-2, 2e-7)  # the table's, not the last seed's (1e-3, 9e-8)
    assert float(m[1]) == pytest.approx(rows[("lstm", 30)][0]) and float(m[2]) == pytest.approx(rows[("vanilla", 30)][0])


@pytest.mark.parametrize("quick", [True, False])
def test_dropped_batches_are_computed_from_the_data(quick):
    plan = P.make_plan(quick, JPG, 0)
    rows = {what: (n, b, d) for what, n, b, d in dropped_batches(plan, JPG)}
    # The palindromes' training split as the data module draws it, not as typed: T=5 has 1,000 palindromes.
    for t in plan.sweep["lengths"] + [19]:
        cfg = plan.rnn_t19 if t == 19 else plan.sweep["cfg"]
        n = len(make_palindrome_data(t, cfg.data_size, cfg.portion_train).train_y)
        assert rows[f"palindromes T={t}"] == (n, 128, n % 128)
    assert rows["palindromes T=5"] == (800, 128, 32)
    cifar_n = 10_000 if quick else 50_000
    assert rows["mlp-cifar/plain-fp32-s0"] == (cifar_n, 256, cifar_n % 256)
    text = "\n".join(deviations(plan, JPG))
    assert "32 of 800 (4.00%) for palindromes T=5 at batch 128" in text
    assert "none of the 80,000 palindromes" not in text


@pytest.mark.parametrize("quick, said", [
    (True, "step 4, factor 0.1 for T=19, so over 6 epochs the rate falls from 0.001 to 0.0001 from epoch 5 on; "
           "step 4, factor 0.1 for the sweep, so over 5 epochs the rate falls from 0.001 to 0.0001 from epoch 5 on"),
    (False, "step 10, factor 0.1 for T=19 and the sweep, so over 30 epochs the rate falls from 0.001 to 1e-05 "
            "from epoch 21 on"),
])
def test_steplr_sentence_follows_the_plan(quick, said):
    plan = P.make_plan(quick, JPG, 0)
    text = "\n".join(deviations(plan, JPG))
    assert said in text
    assert ("step 10" in text) == (not quick) and "after epoch 20" not in text


def test_every_deviation_of_the_issue_is_disclosed():
    text = "\n".join(deviations(P.make_plan(False, JPG, 0), JPG))
    for needle in ("weight decay** is not given by the original: we use 0.01",
                   "Linear -> BatchNorm -> ReLU -> Dropout(0.2)", "standardise each colour channel",
                   "the original trained it data-parallel on several GPUs", "`input_length = 15`",
                   "The last partial batch is dropped", "StepLR's step and factor", "**Precision**"):
        assert needle in text, needle


def test_deviations_follow_the_parts():
    plan = P.select_parts(P.make_plan(False, JPG, 0), P.parse_parts("toy"))
    text = "\n".join(deviations(plan, JPG))
    for absent in ("AdamW", "palindromes", "StepLR", "JPEG", "input_length"):
        assert absent not in text, absent
    assert "Toy data settings" in text


def test_a_precision_note_beside_the_runs_relabels_them(tmp_path):
    (tmp_path / "precision.json").write_text('{"recorded": "fp32", "ran_as": "tf32", "why": "XLA default."}')
    text = "\n".join(deviations(P.make_plan(False, JPG, 0), JPG, out=tmp_path))
    assert "**Precision: TF32**, not the `fp32` the runs' config.json records: XLA default." in text


def _tiny_plan(quick, data, seed, seeds=3):
    """Toy moons (NumPy, JAX) and a one-length, one-seed vanilla sweep: a report in seconds."""
    plan = P.Plan(quick=True, torch=False)
    plan.toy = [mlp_toy.ToyConfig(dataset="moons", steps=60, samples=200, seed=seed, devices=1, framework="both")]
    plan.sweep = {"cfg": rnn.RNNConfig(data_size=256, epochs=2, batch_size=64, hidden=8, seed=seed),
                  "lengths": [3], "seeds": 1, "cells": ["vanilla"]}
    plan.scaled = ["tiny (test)"]
    return plan


def _body(text):
    """REPORT.md less the lines that say when and how it was made."""
    return [x for x in text.splitlines()[3:] if not x.startswith("- ")]


@pytest.mark.slow
def test_render_only_rewrites_the_report_from_its_runs_and_trains_nothing(monkeypatch, tmp_path):
    monkeypatch.setattr(P, "make_plan", _tiny_plan)
    parts = P.parse_parts("toy,sweep")
    first = report.run_report(True, tmp_path, data="synthetic:64", progress=False, parts=parts).read_text()
    assert "by `python -m train report --quick --out " in first and " --data synthetic:64 --parts toy,sweep`" in first
    mtimes = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("summary.json")}
    (tmp_path / "precision.json").write_text('{"recorded": "fp32", "ran_as": "tf32", "why": "a test."}')
    again = report.run_report(True, tmp_path, data="synthetic:64", progress=False, parts=parts,
                              render_only=True).read_text()
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("summary.json")} == mtimes  # nothing trained
    assert "from its committed runs (nothing trained) by `python -m train report --quick" in again
    assert "--parts toy,sweep --render-only`" in again
    assert "**Precision: TF32.** The runs' config.json records `fp32`" in again
    assert "Precision: TF32" not in first
    assert [x for x in _body(again) if x and "Precision" not in x] == [
        x for x in _body(first) if x and "Precision" not in x]
    # A missing run, or one made with other settings, is a one-line error, and nothing is trained.
    monkeypatch.setattr(P, "make_plan", lambda q, d, s, n=3: dataclasses.replace(_tiny_plan(q, d, s), toy=[
        dataclasses.replace(_tiny_plan(q, d, s).toy[0], steps=90)]))
    with pytest.raises(report.UsageError, match=r"moons-numpy-s0 ran with other settings than this report's "
                                                r"plan \(steps=60, plan 90\)"):
        report.run_report(True, tmp_path, data="synthetic:64", progress=False, parts=parts, render_only=True)
    monkeypatch.setattr(P, "make_plan", _tiny_plan)
    run = tmp_path / "rnn-palindrome" / _tiny_plan(True, "", 0).sweep["cfg"].sweep_name
    (tmp_path / "rnn-sweep" / "sweep.json").unlink()
    with pytest.raises(report.UsageError, match="--render-only: no finished sweep in .*rnn-sweep/sweep.json"):
        report.run_report(True, tmp_path, data="synthetic:64", progress=False, parts=parts, render_only=True)
    assert not (tmp_path / "rnn-sweep" / "sweep.json").exists() and run


def test_render_only_of_an_empty_folder_is_one_line(cli_fast, tmp_path):
    r = cli_fast("report", "--render-only", "--parts", "toy", "--out", tmp_path / "out", "--no-progress")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --render-only: no finished run in "), r.stderr
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file() and not p.name.startswith(".")]


@pytest.mark.parametrize("kw, said", [
    ({}, "python -m train report --out results/x"),
    ({"quick": True, "seed": 3, "data": "synthetic:64"}, "python -m train report --quick --out results/x "
                                                         "--data synthetic:64 --seed 3"),
    ({"parts": ("toy", "mlp", "t19", "sweep", "schedule")},
     "python -m train report --out results/x --parts toy,mlp,t19,sweep,schedule"),
    ({"render_only": True}, "python -m train report --out results/x --render-only"),
])
def test_the_reproduce_command_names_every_flag_that_changes_the_report(kw, said):
    quick = kw.pop("quick", False)
    assert report_command(quick, P.ROOT / "results" / "x", **kw) == said


def test_the_committed_full_reference_names_the_parts_it_ran():
    text = (P.ROOT / "results" / "reference-full" / "REPORT.md").read_text()
    left = re.search(r"Parts in this report: ([a-z0-9, ]+);", text)
    command = re.search(r"by `(python -m train report[^`]*)`", text)[1]
    assert left and f"--parts {left[1].replace(' ', '')}" in command


@pytest.mark.parametrize("cells", [["vanilla"], ["vanilla", "lstm"]])
def test_the_lstm_is_named_only_in_a_report_that_has_it(cells):
    sweep = _sweep({(c, t): [0.1] for c in cells for t in (5, 30)})
    text = "\n".join(rnn_section(P.Plan(quick=False), {"rnn": {"sweep": sweep}}, P.ROOT))
    assert ("LSTM" in text) == ("lstm" in cells) and ("| lstm |" in text) == ("lstm" in cells)
