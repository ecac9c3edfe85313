"""What counts as a damaged checkpoint: only damage is deleted; any other failure stops and deletes nothing."""

import errno

import numpy as np
import pytest

from train.backends.checkpoint import Checkpointer, CheckpointReadError


@pytest.fixture
def ck(tmp_path):
    c = Checkpointer(tmp_path / "ck", keep=3)
    for p in (1, 2, 3):
        c.save(p, {"w": np.full(4, p, np.float32)}, {"periods_done": p})
    c.wait()
    yield c
    c.close()


TEMPLATE = {"w": np.zeros(4, np.float32)}


def on_disk(c):
    return sorted(int(p.name) for p in c.directory.iterdir() if p.name.isdigit())


def failing_restore(c, monkeypatch, fail: dict):
    """Make manager.restore raise ``fail[period]`` for the periods named."""
    real = c.manager.restore

    def restore(period, *a, **kw):
        if period in fail:
            raise fail[period]
        return real(period, *a, **kw)
    monkeypatch.setattr(c.manager, "restore", restore)


def test_intact_checkpoint_restores(ck):
    period, state, meta = ck.restore_latest(TEMPLATE)
    assert period == 3 and meta["periods_done"] == 3 and np.array_equal(state["w"], np.full(4, 3, np.float32))


def test_wrong_digest_is_damage_and_falls_back(ck, monkeypatch):
    real = ck.manager.restore

    def tampered(period, *a, **kw):
        out = real(period, *a, **kw)
        if period == 3:
            out.state["w"][0] += 1  # the bytes no longer match the digest saved beside them
        return out
    monkeypatch.setattr(ck.manager, "restore", tampered)
    period, state, _ = ck.restore_latest(TEMPLATE)
    assert period == 2 and on_disk(ck) == [1, 2]


def test_unreadable_newest_with_a_readable_older_one_is_damage(ck, monkeypatch):
    failing_restore(ck, monkeypatch, {3: ValueError("truncated file")})
    assert ck.restore_latest(TEMPLATE)[0] == 2
    assert on_disk(ck) == [1, 2]


def test_nothing_readable_deletes_nothing(ck, monkeypatch):
    failing_restore(ck, monkeypatch, {p: KeyError("unexpected key in the state tree") for p in (1, 2, 3)})
    with pytest.raises(CheckpointReadError, match="cannot read any checkpoint .* nothing was deleted"):
        ck.restore_latest(TEMPLATE)
    assert on_disk(ck) == [1, 2, 3]


def test_a_changed_model_state_deletes_nothing(ck):
    """A code change that adds a parameter: no checkpoint fits the new template; none is deleted."""
    with pytest.raises(CheckpointReadError, match="nothing was deleted"):
        ck.restore_latest({**TEMPLATE, "b": np.zeros(2, np.float32)})
    assert on_disk(ck) == [1, 2, 3]


def test_permission_error_deletes_nothing(ck, monkeypatch):
    denied = PermissionError(errno.EACCES, "Permission denied", str(ck.directory / "3"))
    monkeypatch.setattr(ck.manager, "restore", _chained(ck.manager.restore, 3, denied))
    with pytest.raises(CheckpointReadError, match="Permission denied"):
        ck.restore_latest(TEMPLATE)
    assert on_disk(ck) == [1, 2, 3]


def _chained(restore, period, cause):
    """restore, but ``period`` raises an orbax-style error wrapping ``cause``."""
    def wrapped(p, *a, **kw):
        if p == period:
            raise RuntimeError("orbax could not open the file") from cause
        return restore(p, *a, **kw)
    return wrapped


def test_clear_keeps_the_number_of_checkpoints_to_keep(tmp_path):
    c = Checkpointer(tmp_path / "ck", keep=2)
    try:
        for p in (1, 2):
            c.save(p, {"w": np.zeros(2, np.float32)}, {})
        c.clear()
        assert c.keep == 2 and c.steps() == []
        for p in (1, 2, 3):
            c.save(p, {"w": np.full(2, p, np.float32)}, {})
        assert c.steps() == [2, 3]
    finally:
        c.close()
