"""Checkpoints with orbax: the training state plus everything needed to resume exactly.

A checkpoint holds the :class:`~train.trainer.TrainState` (parameters, batch
statistics, optimizer state, step, dropout key) and a JSON record: the number
of periods done (the data order is a pure function of seed and period, so
this is the data position), the metric rows so far, elapsed time, and a
SHA-256 of the state's bytes. Orbax writes each checkpoint to a temporary
folder and renames it when complete; the digest catches a checkpoint that was
damaged on disk afterwards, in which case the previous one is used.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path
from typing import Any

import jax
import numpy as np

log = logging.getLogger(__name__)


def state_digest(state) -> str:
    h = hashlib.sha256()
    for leaf in jax.tree.leaves(state):
        a = np.ascontiguousarray(np.asarray(leaf))
        h.update(str((a.shape, a.dtype.str)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


class Checkpointer:
    """Saves and restores (TrainState, meta) under ``<run_dir>/checkpoints/<period>``, keeping the last few."""

    def __init__(self, directory: str | Path, *, keep: int = 3) -> None:
        import orbax.checkpoint as ocp

        self._ocp = ocp
        self.directory = Path(directory).absolute()
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=False))

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def save(self, period: int, state, meta: dict[str, Any]) -> None:
        state = jax.device_get(state)
        meta = {**meta, "period": period, "state_sha256": state_digest(state)}
        ocp = self._ocp
        self.manager.save(period, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                          meta=ocp.args.JsonSave(meta)), force=True)
        self.manager.wait_until_finished()

    def restore_latest(self, template) -> tuple[int, Any, dict] | None:
        """(period, state, meta) of the newest intact checkpoint, or None if there is none.

        ``template`` is a host TrainState of the right structure (a freshly initialised one).
        """
        ocp = self._ocp
        template = jax.device_get(template)
        damaged = []
        for period in reversed(self.steps()):
            try:
                out = self.manager.restore(period, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(template), meta=ocp.args.JsonRestore()))
                state, meta = out.state, dict(out.meta)
                if state_digest(state) != meta.get("state_sha256"):
                    raise ValueError("state digest does not match")
            except Exception as e:  # noqa: BLE001 - any failure means: this checkpoint is unusable
                log.warning("checkpoint %s/%d is damaged (%s); trying the previous one",
                            self.directory, period, str(e).splitlines()[0][:200])
                print(f"warning: checkpoint {self.directory}/{period} is damaged; using the previous one")
                damaged.append(period)
                continue
            self._discard(damaged)
            return period, state, meta
        self._discard(damaged)
        return None

    def _discard(self, periods: list[int]) -> None:
        """Remove damaged checkpoints so that training can write those periods again."""
        for period in periods:
            shutil.rmtree(self.directory / str(period), ignore_errors=True)
        if periods:
            self.manager.reload()

    def clear(self) -> None:
        self.manager.close()
        shutil.rmtree(self.directory, ignore_errors=True)
        self.__init__(self.directory)

    def close(self) -> None:
        self.manager.close()
