"""scripts/check_metrics.py's row comparison (the runs themselves are not run here)."""

import importlib.util
import math
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "check_metrics", Path(__file__).resolve().parents[1] / "scripts" / "check_metrics.py")
check_metrics = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_metrics)
first_difference = check_metrics.first_difference

ROWS = [{"step": 30, "epoch": 1, "split": "train", "loss": 0.6234741806983948, "accuracy": 0.665625, "time_s": 0.006},
        {"step": 30, "epoch": 1, "split": "test", "loss": 0.5925762057304382, "accuracy": 0.7125, "time_s": 0.0061}]


def changed(row: int, **kw) -> list[dict]:
    return [{**r, **kw} if i == row else dict(r) for i, r in enumerate(ROWS)]


def test_identical_rows_have_no_difference_whatever_their_time():
    assert first_difference(ROWS, ROWS) is None
    assert first_difference(ROWS, changed(1, time_s=99.0)) is None


def test_one_ulp_of_a_loss_is_a_difference():
    loss = math.nextafter(ROWS[1]["loss"], math.inf)
    assert loss != ROWS[1]["loss"]
    assert first_difference(ROWS, changed(1, loss=loss)) == (1, "loss", ROWS[1]["loss"], loss)


def test_type_missing_key_and_row_count_are_differences():
    assert first_difference(ROWS, changed(0, epoch=1.0)) == (0, "epoch", 1, 1.0)
    work = changed(0)
    del work[0]["accuracy"]
    assert first_difference(ROWS, work) == (0, "accuracy", 0.665625, "<absent>")
    assert first_difference(ROWS, ROWS[:1]) == (1, "<row count>", 2, 1)


def test_nan_equals_nan():
    assert first_difference(changed(0, loss=math.nan), changed(0, loss=math.nan)) is None
