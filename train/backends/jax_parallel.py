"""The three data-parallel paths of the trainer, each the same contract: N devices compute what one
device computes on the same global batch (docs/data-parallel.md).

- ``pmap``: one replica of the state per device (a leading device axis), the per-device program
  with explicit collectives (``lax.pmean``/``psum`` over :data:`AXIS`).
- ``shard_map``: the same per-device program over a 1-D :class:`~jax.sharding.Mesh` named
  :data:`AXIS`, the state one replicated global array.
- ``jit``: the global program (the model without an axis name), batch indices sharded by
  ``NamedSharding(mesh, P(AXIS))``, the state replicated; XLA's partitioner inserts the collectives.

Every path takes the same host layout: per-shard arrays ``[shards, ...]`` (shard d holds batch columns
d*B/shards.. of each step), sharded over the devices on their leading axis, and returns per-shard
predictions ``[shards, C, E]`` and global metrics.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax import lax
from jax.sharding import NamedSharding, PartitionSpec as P

AXIS = "data"
PARALLEL = ("pmap", "shard_map", "jit")


def model_axis(parallel: str | None) -> str | None:
    """The axis name a model's batch norm averages over on this path: the per-device programs
    (pmap, shard_map) name it; the global program (jit) and one plain device need none."""
    return AXIS if parallel in ("pmap", "shard_map") else None


def global_devices(local: list) -> list:
    """Every device of the job in shard order: process 0's, then process 1's (this process's are
    ``local``, in its order), so shard ``pid * n + j`` is this process's j-th device."""
    if jax.process_count() == 1:
        return list(local)
    others = sorted((d for d in jax.devices() if d.process_index != jax.process_index()),
                    key=lambda d: (d.process_index, d.id))
    return sorted([*others, *local], key=lambda d: d.process_index)  # stable: keeps ``local``'s order


@dataclasses.dataclass
class Programs:
    """The four compiled-on-call functions of a path (see StepFns for their arguments)."""

    train: Callable
    evaluate: Callable
    step: Callable
    eval_chunk: Callable[[str], Callable]
    stacked_axis: int      # where per-step results stack in the unfused path: after a device axis or not


def pmap_programs(fns, devices: list) -> Programs:
    # pmap's `devices` restricts collectives to the devices listed; across processes the
    # collectives must span every process's devices, so there pmap gets none (= all).
    devs = None if jax.process_count() > 1 else devices
    pm = functools.partial(jax.pmap, axis_name=AXIS, devices=devs)
    return Programs(pm(fns.train_period, donate_argnums=(0,)), pm(fns.evaluate), pm(fns.data_step, donate_argnums=(0,)),
                    lambda split: pm(functools.partial(fns.data_eval_chunk, split)), stacked_axis=1)


def _named(f, like):
    """``f`` under the name of the step function it runs: compile logs and profiles name programs so."""
    name = getattr(like, "__name__", None) or like.func.__name__  # a functools.partial's function
    f.__name__ = f.__qualname__ = name
    return f


def _first(f):
    """f on the device's block of per-shard arguments ``[1, ...]``, which shard_map hands each device."""
    return _named(lambda state, data, *shards: f(state, data, *jax.tree.map(lambda a: a[0], shards)), f)


def shard_map_programs(fns, mesh) -> Programs:
    # check_vma=False: the program is pmap's, explicit collectives included. With checking on, JAX
    # would itself sum the gradients of the replicated parameters over the devices, and the
    # explicit pmean would then average a sum.
    def smap(f, out_specs, n_sharded=1, donate=False):
        g = jax.shard_map(_first(f), mesh=mesh, in_specs=(P(), P(), *[P(AXIS)] * n_sharded),
                          out_specs=out_specs, check_vma=False)
        return jax.jit(g, donate_argnums=(0,) if donate else ())

    def evaluate(state, data, evals):
        return {s: (sums, preds[None]) for s, (sums, preds) in fns.evaluate(state, data, evals).items()}

    def eval_chunk(split):
        def f(state, data, i, m):
            sums, pred = fns.data_eval_chunk(split, state, data, i, m)
            return sums, pred[None]
        return smap(_named(f, fns.data_eval_chunk), (P(), P(AXIS)), n_sharded=2)

    return Programs(smap(fns.train_period, (P(), P()), donate=True), smap(evaluate, P(AXIS)),
                    smap(fns.data_step, (P(), P()), donate=True), eval_chunk, stacked_axis=0)


def jit_programs(fns, mesh) -> Programs:
    """The global program; per-shard index arrays [S, ...] become the global batch [..., S * b], its
    batch axis sharded over ``AXIS``, so each device gathers and computes its own examples."""
    rep, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P(AXIS))

    def batch(idx):  # [S, *lead, b] -> [*lead, S * b], batch axis sharded
        idx = jax.numpy.moveaxis(idx, 0, -2)
        idx = idx.reshape(*idx.shape[:-2], -1)
        return lax.with_sharding_constraint(idx, NamedSharding(mesh, P(*[None] * (idx.ndim - 1), AXIS)))

    def per_shard(pred, s):  # [*lead, S * b] -> [S, *lead, b]
        return jax.numpy.moveaxis(pred.reshape(*pred.shape[:-1], s, -1), -2, 0)

    def train_period(state, data, idx):
        return fns.train_period(state, data, batch(idx))

    def data_step(state, data, i):
        return fns.data_step(state, data, batch(i))

    def evaluate(state, data, evals):
        out = fns.evaluate(state, data, {s: (batch(i), batch(m)) for s, (i, m) in evals.items()})
        return {s: (sums, per_shard(pred, evals[s][0].shape[0])) for s, (sums, pred) in out.items()}

    def eval_chunk(split):
        def data_eval_chunk(state, data, i, m):
            sums, pred = fns.data_eval_chunk(split, state, data, batch(i), batch(m))
            return sums, per_shard(pred, i.shape[0])
        return jax.jit(data_eval_chunk, out_shardings=(rep, sharded))

    return Programs(jax.jit(train_period, donate_argnums=(0,), out_shardings=(rep, rep)), jax.jit(evaluate),
                    jax.jit(data_step, donate_argnums=(0,), out_shardings=(rep, rep)), eval_chunk, stacked_axis=0)


def single_programs(fns) -> Programs:
    return Programs(jax.jit(fns.train_period, donate_argnums=(0,)), jax.jit(fns.evaluate),
                    jax.jit(fns.data_step, donate_argnums=(0,)),
                    lambda split: jax.jit(functools.partial(fns.data_eval_chunk, split)), stacked_axis=0)


def host_value(x) -> np.ndarray:
    """A replicated (or single-device) array's value, read from this process's first shard."""
    return np.asarray(x.addressable_shards[0].data) if isinstance(x, jax.Array) else np.asarray(x)


def gather_shards(x: Any) -> np.ndarray:
    """A global array sharded over processes -> its whole value on every process."""
    if not isinstance(x, jax.Array) or x.is_fully_addressable:
        return np.asarray(x)
    from jax.experimental import multihost_utils
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
