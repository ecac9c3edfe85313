"""Checkpoints with orbax, the engine's through ``train.backends``: the training state and what an exact resume needs.

A checkpoint is a backend's host state plus periods done (the data position), metric rows and a
SHA-256 that catches later damage. ``save`` copies to host (the next call donates the device
buffers) and writes on a background thread; ``wait`` joins it and re-raises. ``save_sharded`` and
``restore_latest(sharded=True)`` keep a global state's arrays where they are: every process of a
multi-process job calls them, and orbax writes and reads each process's own shards (a replicated
array once), so the state is never gathered on one host. See docs/resilience.md.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import shutil
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jax
import numpy as np

log = logging.getLogger(__name__)


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (a full disk, a permission): one line, and nothing half-written."""


class CheckpointReadError(OSError):
    """Checkpoints exist but cannot be read for a reason other than damage: one line, nothing deleted."""


# A permission or read-only file system says nothing about the checkpoint itself: never damage.
_ACCESS_ERRNOS = (errno.EACCES, errno.EPERM, errno.EROFS)


def _root_os_error(e: BaseException) -> OSError | None:
    """The OSError at the bottom of an exception chain (orbax wraps the cause in its own errors)."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.strerror:
            return e
        e = e.__cause__ or e.__context__
    return None


def _local_value(x) -> np.ndarray:
    """A leaf's value as this process holds it: a replicated global array's from its first local shard."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        if not x.is_fully_replicated:
            raise ValueError("a state digest needs every array replicated on each process")
        return np.asarray(x.addressable_shards[0].data)
    return np.asarray(x)


def state_digest(state) -> str:
    h = hashlib.sha256()
    for leaf in jax.tree.leaves(state):
        a = np.ascontiguousarray(_local_value(leaf))
        h.update(str((a.shape, a.dtype.str)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


class Checkpointer:
    """Saves and restores (TrainState, meta) under ``<run_dir>/checkpoints/<period>``, keeping the last few."""

    def __init__(self, directory: str | Path, *, keep: int = 3) -> None:
        import orbax.checkpoint as ocp

        self._ocp = ocp
        self.directory = Path(directory).absolute()
        self.keep = keep
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=False))
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint")
        self._pending: Future | None = None
        self.write_time_s = 0.0  # background hashing + writing, off the critical path

    def steps(self) -> list[int]:
        self.wait()
        return sorted(self.manager.all_steps())

    def save(self, period: int, state, meta: dict[str, Any]) -> None:
        """Copy ``state`` to the host now; hash and write it in the background."""
        self.wait()
        # A host array may alias a CPU device buffer that the next (donating) training call reuses.
        state = jax.tree.map(lambda x: x if getattr(x, "flags", None) is not None and x.flags.owndata
                             else np.array(x), jax.device_get(state))
        self._pending = self._pool.submit(self._write, period, state, dict(meta))

    def save_sharded(self, period: int, state, meta: dict[str, Any]) -> None:
        """Write the global ``state`` (jax.Arrays, left on their devices) now, on every process of the job."""
        self.wait()
        self._write(period, state, dict(meta))

    def _write(self, period: int, state, meta: dict[str, Any]) -> None:
        t = time.perf_counter()
        meta = {**meta, "period": period, "state_sha256": state_digest(state)}
        ocp = self._ocp
        try:
            self.manager.save(period, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                              meta=ocp.args.JsonSave(meta)), force=True)
            self.manager.wait_until_finished()
        except Exception as e:
            for tmp in self.directory.glob(f"{period}.orbax-checkpoint-tmp*"):
                shutil.rmtree(tmp, ignore_errors=True)  # the earlier checkpoints stay as they were
            cause = _root_os_error(e)
            reason = cause.strerror if cause else f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
            raise CheckpointWriteError(f"cannot write checkpoint {self.directory}/{period}: {reason}") from e
        self.write_time_s += time.perf_counter() - t

    @property
    def busy(self) -> bool:
        """True while the last save is still being written."""
        return self._pending is not None and not self._pending.done()

    def wait(self) -> None:
        """Block until the last save is on disk; re-raise its error."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def restore_latest(self, template, *, max_period: int | None = None,
                       sharded: bool = False) -> tuple[int, Any, dict] | None:
        """(period, state, meta) of the newest intact checkpoint (at or before ``max_period``), or None.

        Damaged ones are removed when an older one reads. Otherwise nothing is deleted and
        :class:`CheckpointReadError` is raised: unreadable may mean a model or orbax change, not damage.
        ``sharded``: restore into ``template``'s shardings (global arrays, each process reading its own
        shards), on every process of the job; else into host arrays.
        """
        if sharded:
            template = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), template)
        else:
            template = jax.device_get(template)
        damaged, unreadable = [], []
        for period in reversed(self.steps()):
            if max_period is not None and period > max_period:
                continue
            try:
                state, meta = self._restore(period, template)
            except Exception as e:  # noqa: BLE001 - classified below; nothing is deleted yet
                cause = _root_os_error(e)
                if cause is not None and cause.errno in _ACCESS_ERRNOS:
                    raise CheckpointReadError(f"cannot read checkpoint {self.directory}/{period}: "
                                              f"{cause.strerror} ({cause.filename}); nothing was deleted") from e
                unreadable.append((period, e))
                continue
            if state_digest(state) != meta.get("state_sha256"):
                damaged.append(period)
                self._warn(period, "its state digest does not match")
                continue
            for p, e in unreadable:
                self._warn(p, f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}")
            self._discard(damaged + [p for p, _ in unreadable])
            return period, state, meta
        if unreadable:
            period, e = unreadable[0]
            raise CheckpointReadError(
                f"cannot read any checkpoint in {self.directory} (newest, {period}: {type(e).__name__}: "
                f"{str(e).splitlines()[0][:200] if str(e) else 'no detail'}); they may come from another version "
                "of the model or of orbax; nothing was deleted: run without --resume in another --out, or "
                "move the folder away") from e
        self._discard(damaged)
        return None

    def _restore(self, period: int, template) -> tuple[Any, dict]:
        ocp = self._ocp
        out = self.manager.restore(period, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(template), meta=ocp.args.JsonRestore()))
        return out.state, dict(out.meta)

    def _warn(self, period: int, why: str) -> None:
        log.warning("checkpoint %s/%d is damaged (%s); trying the previous one", self.directory, period, why)
        print(f"warning: checkpoint {self.directory}/{period} is damaged ({why}); using the previous one")

    def _discard(self, periods: list[int]) -> None:
        """Remove damaged checkpoints so that training can write those periods again."""
        for period in periods:
            shutil.rmtree(self.directory / str(period), ignore_errors=True)
        if periods:
            self.manager.reload()

    def clear(self) -> None:
        """Remove an earlier run's checkpoints before a fresh run writes its own."""
        self.close()
        try:
            if jax.process_index() == 0:  # the shared folder of a multi-process job: removed once
                shutil.rmtree(self.directory)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise CheckpointWriteError(f"cannot remove the earlier run's checkpoints in {self.directory}: "
                                       f"{e.strerror or e} ({e.filename})") from None
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils
            multihost_utils.sync_global_devices(f"cleared {self.directory}")
        self.__init__(self.directory, keep=self.keep)

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._pool.shutdown(wait=True)
            self.manager.close()
