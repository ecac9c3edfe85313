"""The shared JAX trainer for every model: pure step functions on a pytree :class:`TrainState`.

Splits live on the device and a period (the steps between evaluations) is one compiled
``lax.scan`` over batch indices ``[K, B]``; under ``pmap`` N devices compute what one does on the
same global batch (docs/data-parallel.md). Precision is applied where this module compiles.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx, struct
from jax import lax

from jax.sharding import Mesh, NamedSharding, PartitionSpec

from train.backends import jax_parallel
from train.backends.jax_parallel import AXIS
from train.errors import UsageError
from train.precision import TABLE, Precision

Preprocess = Callable[[jax.Array], jax.Array]


class TrainState(struct.PyTreeNode):
    step: jax.Array          # int32 scalar: optimizer steps taken
    params: Any              # nnx.State of nnx.Param
    model_state: Any         # nnx.State of every other Variable (batch stats)
    opt_state: Any           # optax state
    key: jax.Array           # uint32[2]: base key for dropout, folded with the step


def matmul_scope(precision: Precision | str | None):
    """Context to trace and compile at ``precision`` (a Precision or its name); None keeps the ambient one."""
    if precision is None:
        return contextlib.nullcontext()
    if isinstance(precision, str):
        precision = TABLE[precision]
    return jax.default_matmul_precision(precision.matmul)


def split_model(model: nnx.Module):
    """model -> (graphdef, params, model_state)."""
    return nnx.split(model, nnx.Param, ...)


def create_state(model: nnx.Module, tx: optax.GradientTransformation, seed: int) -> tuple[Any, TrainState]:
    graphdef, params, model_state = split_model(model)

    # One compiled program: eagerly, each zeros_like and the PRNG key would compile their own.
    @jax.jit
    def init(params, model_state):
        return TrainState(step=jnp.zeros((), jnp.int32), params=params, model_state=model_state,
                          opt_state=tx.init(params), key=jax.random.PRNGKey(seed ^ 0x5EED))
    return graphdef, init(params, model_state)


def param_count(params) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example cross-entropy in at least float32 (bf16 logits are upcast; float64 stays)."""
    return optax.softmax_cross_entropy_with_integer_labels(logits.astype(_acc_dtype(logits)), labels)


def _acc_dtype(x) -> jnp.dtype:
    return jnp.promote_types(x.dtype, jnp.float32)


@dataclasses.dataclass(frozen=True)
class StepFns:
    """Builds the pure functions for one model/optimizer; ``axis_name`` is set under pmap."""

    graphdef: Any
    tx: optax.GradientTransformation
    preprocess: Preprocess
    axis_name: str | None = None

    def _pmean(self, x):
        return lax.pmean(x, self.axis_name) if self.axis_name else x

    def apply(self, params, model_state, x, *, train: bool, key=None):
        # copy=True: fresh Variables owned by this trace, so batch norm may update its statistics.
        model = nnx.merge(self.graphdef, params, model_state, copy=True)
        logits = model(self.preprocess(x), train=train, rngs=key)
        _, _, new_model_state = split_model(model)
        return logits, new_model_state

    def train_step(self, state: TrainState, x, y):
        # The same key on every device: a model with dropout takes each device's rows of the global
        # batch's mask (jax_models/mlp.py), so N devices draw what one device draws.
        key = jax.random.fold_in(state.key, state.step)

        def loss_fn(params):
            logits, new_ms = self.apply(params, state.model_state, x, train=True, key=key)
            loss = cross_entropy(logits, y).mean()
            return loss, (new_ms, (jnp.argmax(logits, -1) == y).mean())

        (loss, (new_ms, acc)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        # Equal per-device batch sizes, so the mean of means is the global mean.
        grads = self._pmean(grads)
        updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"loss": self._pmean(loss), "accuracy": self._pmean(acc),
                   "grad_norm": optax.tree.norm(grads)}
        return state.replace(step=state.step + 1, params=params, model_state=new_ms,
                             opt_state=opt_state), metrics

    def train_steps(self, state: TrainState, x_all, y_all, idx):
        """lax.scan of train_step over idx [K, B]: batch k is (x_all[idx[k]], y_all[idx[k]])."""
        def body(st, i):
            return self.train_step(st, x_all[i], y_all[i])
        return lax.scan(body, state, idx)

    def eval_chunk(self, state: TrainState, x_all, y_all, i, m):
        """One evaluation batch: indices i [E], mask m [E] (0 = padding) -> ([loss_sum, correct, count], pred [E])."""
        logits, _ = self.apply(state.params, state.model_state, x_all[i], train=False)
        y = y_all[i]
        pred = jnp.argmax(logits, -1).astype(jnp.int32)
        acc = _acc_dtype(x_all) if jnp.issubdtype(x_all.dtype, jnp.floating) else jnp.float32
        sums = jnp.stack([(cross_entropy(logits, y) * m).sum().astype(acc), ((pred == y) * m).sum().astype(acc),
                          m.sum().astype(acc)])
        return sums, pred

    def eval_sums(self, state: TrainState, x_all, y_all, idx, mask):
        """idx/mask [C, E] (mask 0 = padding) -> ([loss_sum, correct, count] over devices, preds [C, E])."""
        def body(total, im):
            sums, pred = self.eval_chunk(state, x_all, y_all, *im)
            return total + sums, pred

        zero = jnp.zeros((3,), _acc_dtype(x_all) if jnp.issubdtype(x_all.dtype, jnp.floating) else jnp.float32)
        sums, preds = lax.scan(body, zero, (idx, mask))
        return (lax.psum(sums, self.axis_name) if self.axis_name else sums), preds

    def data_step(self, state: TrainState, data, i):
        """One train step on the batch data[train][i] (the unfused path)."""
        return self.train_step(state, data["train_x"][i], data["train_y"][i])

    def data_eval_chunk(self, split: str, state: TrainState, data, i, m):
        sums, pred = self.eval_chunk(state, data[f"{split}_x"], data[f"{split}_y"], i, m)
        return (lax.psum(sums, self.axis_name) if self.axis_name else sums), pred

    def train_period(self, state: TrainState, data: Mapping[str, jax.Array], idx):
        """K fused train steps on data["train_x"/"train_y"] at idx [K, B] -> (state, per-step metrics [K])."""
        return self.train_steps(state, data["train_x"], data["train_y"], idx)

    def evaluate(self, state: TrainState, data: Mapping[str, jax.Array], evals):
        """{split: (idx [C, E], mask [C, E])} -> {split: ([loss_sum, correct, count], predictions [C, E])}."""
        return {s: self.eval_sums(state, data[f"{s}_x"], data[f"{s}_y"], i, m) for s, (i, m) in evals.items()}


def eval_plan(n: int, batch: int, n_shards: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """idx, mask ``[n_shards, C, E]`` covering 0..n-1 in order, padded with masked zeros; ``batch``
    shrinks for small sets so little padding is evaluated."""
    per_shard = -(-n // n_shards)
    e = max(1, min(batch, per_shard))
    c = -(-per_shard // e)
    total = n_shards * c * e
    idx = np.zeros(total, np.int32)
    mask = np.zeros(total, np.float32)
    idx[:n] = np.arange(n, dtype=np.int32)
    mask[:n] = 1.0
    return idx.reshape(n_shards, c, e), mask.reshape(n_shards, c, e)


def select_devices(requested: int, global_batch: int) -> list:
    """``requested`` local devices (0: all); a :class:`UsageError` names the counts that split the batch."""

    local = jax.local_devices()
    n = len(local) if requested == 0 or jax.process_count() > 1 else requested
    shards = n * jax.process_count()
    if global_batch % shards:
        ok = [d for d in range(1, len(local) + 1) if global_batch % (d * jax.process_count()) == 0]
        raise UsageError(f"global batch {global_batch} does not split over {shards} devices "
                         f"({n} per process x {jax.process_count()} processes): it is not divisible; "
                         f"use --batch-size a multiple of {shards}, or --devices one of {ok or [1]}")
    if n > len(local):
        raise UsageError(f"--devices {n} asked for, but this process has only {len(local)} local devices")
    return local[:n]


class AotCache:
    """Ahead-of-time compiles per argument signature, timing it apart in ``compile_time_s`` and per
    program and stage in ``stages`` (``{name: {"trace", "lower", "compile": seconds}}``; a ``pmap``
    has no trace stage of its own, its ``lower`` traces, so it gets ``"trace+lower"``).

    ``run_first`` is for several processes, whose process-local arrays an AOT executable rejects.
    Every call runs at ``precision``, else a jitted function would recompile at the ambient one.
    """

    def __init__(self, compiler_options: dict | None = None, *, run_first: bool = False,
                 precision: Precision | None = None) -> None:
        self.compiler_options = dict(compiler_options) if compiler_options else None
        self.run_first = run_first
        self.precision = precision
        self.compile_time_s = 0.0
        self.stages: dict[str, dict[str, float]] = {}
        self._exes: dict[Any, Any] = {}

    def __call__(self, name: str, fn, *args):
        with matmul_scope(self.precision):
            return self._call(name, fn, *args)

    def _call(self, name: str, fn, *args):
        sig = (name, tuple((getattr(a, "shape", None), str(getattr(a, "dtype", ""))) for a in jax.tree.leaves(args)))
        exe = self._exes.get(sig)
        if exe is None:
            t = time.perf_counter()
            if self.run_first:
                out = jax.block_until_ready(fn(*args))
                self.compile_time_s += time.perf_counter() - t
                self._exes[sig] = fn
                return out
            exe = self._compile(name, fn, args)
            self.compile_time_s += time.perf_counter() - t
            self._exes[sig] = exe
        return exe(*args)

    def _compile(self, name: str, fn, args):
        # jax.jit traces, lowers and compiles in separate calls; pmap's lower traces as well.
        front = ((("trace", lambda _: fn.trace(*args)), ("lower", lambda t: t.lower())) if hasattr(fn, "trace")
                 else (("trace+lower", lambda _: fn.lower(*args)),))
        out, parts = None, self.stages.setdefault(name, {})
        for part, stage in (*front, ("compile", lambda low: low.compile(compiler_options=self.compiler_options))):
            t = time.perf_counter()
            out = stage(out)
            parts[part] = parts.get(part, 0.0) + time.perf_counter() - t
        return out


class Trainer:
    """Runs :class:`StepFns` on one device (plain ``jit``) or data parallel on one of the paths of
    :mod:`~train.backends.jax_parallel`, from host arrays and *global* index plans; owns placement,
    the split of each batch over every process's devices, and compilation."""

    def __init__(self, graphdef, tx, preprocess: Preprocess, *, devices: list | None = None,
                 compiler_options: dict | None = None, fuse: bool = True, parallel: str | None = None,
                 precision: Precision | None = None) -> None:
        self.devices = list(devices) if devices else [jax.local_devices()[0]]
        # XLA options for every compile, e.g. -O0 for a tiny model whose run is mostly compiling.
        self.compiler_options = dict(compiler_options) if compiler_options else None
        self.n = len(self.devices)                       # devices fed by this process
        self.n_proc, self.pid = jax.process_count(), jax.process_index()
        self.shards = self.n * self.n_proc               # devices in the whole job
        # One device takes the plain jit path unless a path is named (so `bench` can time what it costs);
        # several take pmap unless another path is named.
        if parallel not in (None, *jax_parallel.PARALLEL):
            raise ValueError(f"parallel must be None or one of {jax_parallel.PARALLEL}, got {parallel!r}")
        self.path = parallel if parallel is not None else ("pmap" if self.shards > 1 else None)
        self.parallel = self.path is not None
        self.fns = StepFns(graphdef, tx, preprocess, jax_parallel.model_axis(self.path))
        # None: compile at the caller's ambient matmul precision (the bench sets its own).
        self.precision = precision
        self._call = AotCache(self.compiler_options, run_first=self.n_proc > 1, precision=precision)
        if self.parallel and self.n_proc > 1 and self.devices != jax.local_devices():
            raise ValueError("a multi-process run must use every local device of each process")
        self.mesh = Mesh(np.array(jax_parallel.global_devices(self.devices)), (AXIS,)) if self.parallel else None
        if self.path == "pmap":
            # pmap's arrays: a leading axis over this process's devices.
            self._sharded = NamedSharding(Mesh(np.array(self.devices), (AXIS,)), PartitionSpec(AXIS))
            self.programs = jax_parallel.pmap_programs(self.fns, self.devices)
        elif self.parallel:
            self._sharded = NamedSharding(self.mesh, PartitionSpec(AXIS))
            self._replicated = NamedSharding(self.mesh, PartitionSpec())
            make = jax_parallel.shard_map_programs if self.path == "shard_map" else jax_parallel.jit_programs
            self.programs = make(self.fns, self.mesh)
        else:
            self.programs = jax_parallel.single_programs(self.fns)
        # Fused periods (one lax.scan) are the fast path; XLA:CPU compiles convolutions inside a scan
        # without its fast kernels, so CPU convnets run one compiled step per call (same numbers).
        self.fuse = fuse
        self._eval_chunk_fns: dict[str, Any] = {}

    # -- placement -------------------------------------------------------------------------
    def replicate(self, tree):
        """Pytree -> on every local device (leading device axis under pmap, one replicated global array
        otherwise), without N host copies."""
        if not self.parallel:
            return jax.device_put(tree, self.devices[0])
        if self.path == "pmap":
            def rep(x):
                x = np.asarray(x)
                return jax.make_array_from_callback((self.n, *x.shape), self._sharded, lambda _: x[None])
        else:
            def rep(x):
                x = np.asarray(x)
                return jax.make_array_from_callback(x.shape, self._replicated, lambda i: x[i])
        return jax.tree.map(rep, tree)

    def local(self, x: np.ndarray) -> np.ndarray:
        """Rows of a per-shard host array [shards, ...] that belong to this process's devices."""
        return x[self.pid * self.n:(self.pid + 1) * self.n]

    def shard(self, tree):
        """Host arrays with a leading axis of this process's device count -> one slice per device (a
        global array over every process's devices, off pmap)."""
        if not self.parallel:
            return jax.device_put(jax.tree.map(lambda x: x[0], tree), self.devices[0])
        if self.path == "pmap":
            return jax.device_put(tree, self._sharded)
        return jax.tree.map(lambda x: jax.make_array_from_process_local_data(
            self._sharded, np.asarray(x), (self.shards, *np.shape(x)[1:])), tree)

    def unreplicate(self, tree):
        """Device state -> host numpy copy of one replica, without an on-device gather."""
        if not self.parallel:
            return jax.device_get(tree)
        if self.path == "pmap":
            return jax.tree.map(lambda x: np.asarray(x.addressable_shards[0].data)[0], tree)
        return jax.tree.map(jax_parallel.host_value, tree)

    def split_batches(self, idx: np.ndarray) -> np.ndarray:
        """Global train indices [K, B] -> per-shard [shards, K, B/shards]: shard d gets columns d*B/shards.."""
        k, b = idx.shape
        if b % self.shards:
            raise ValueError(f"global batch {b} is not divisible by {self.shards} devices")
        return np.ascontiguousarray(idx.reshape(k, self.shards, b // self.shards).transpose(1, 0, 2))

    # -- running -----------------------------------------------------------------------------
    @property
    def compile_time_s(self) -> float:
        return self._call.compile_time_s

    def compiled(self) -> dict[str, Any]:
        """Compiled programs by name ("train", "step", "evaluate", "eval-<split>"), latest signature's."""
        return {sig[0]: exe for sig, exe in self._call._exes.items()}

    def _local_evals(self, evals):
        return {s: self.shard(tuple(self.local(a) for a in plan)) for s, plan in evals.items()}

    def train(self, state, data, idx: np.ndarray):
        """Train on global batch indices idx [K, B] -> (state, per-step metrics on device)."""
        split = self.local(self.split_batches(np.asarray(idx, np.int32)))  # [n, K, b]
        if self.fuse:
            return self._call("train", self.programs.train, state, data, self.shard(split))
        metrics = []
        for k in range(split.shape[1]):  # the same steps, one compiled call each
            state, m = self._call("step", self.programs.step, state, data, self.shard(split[:, k]))
            metrics.append(m)
        axis = self.programs.stacked_axis  # the step axis, after the device axis under pmap
        return state, jax.tree.map(lambda *xs: jnp.stack(xs, axis=axis), *metrics)

    def evaluate(self, state, data, evals: Mapping[str, tuple[np.ndarray, np.ndarray]]):
        """Evaluate {split: eval_plan(n, E, self.shards)} -> device results (see StepFns.evaluate)."""
        if self.fuse:
            return self._call("evaluate", self.programs.evaluate, state, data, self._local_evals(evals))
        out = {}
        axis = 1 if self.parallel else 0  # the chunk axis, after the shard axis
        for s, plan in evals.items():
            ci, cm = (self.local(a) for a in plan)  # [n, C, E]
            total, preds = None, []
            fn = self._eval_chunk_fns.setdefault(s, self.programs.eval_chunk(s))
            for c in range(ci.shape[1]):
                sums, pred = self._call(f"eval-{s}", fn, state, data, self.shard(ci[:, c]), self.shard(cm[:, c]))
                total = sums if total is None else total + sums
                preds.append(pred)
            out[s] = (total, jnp.stack(preds, axis=axis))
        return out

    def host_step_metrics(self, step_metrics) -> dict[str, np.ndarray]:
        """Per-step device metrics -> {name: [K]} on the host (identical on every device after pmean)."""
        if self.path == "pmap":
            return jax.tree.map(lambda x: x[0], jax.device_get(step_metrics))
        return jax.tree.map(jax_parallel.host_value, step_metrics)

    def host_evals(self, evals_out, plans, order=None):
        """-> ({split: {"loss", "accuracy", "count"}}, {split: predicted labels [n] in example order})."""
        metrics, preds = {}, {}
        for split in order or evals_out:
            sums, pred = evals_out[split]
            loss_sum, correct, count = (float(v) for v in jax_parallel.host_value(sums).reshape(-1, 3)[0])
            metrics[split] = {"loss": loss_sum / count, "accuracy": correct / count, "count": int(count)}
            # eval_plan lays examples 0..n-1 out in order across shards, chunks and rows, padding last.
            if self.path not in (None, "pmap"):  # a global array: every process's shards, in shard order
                pred = jax_parallel.gather_shards(pred)
            elif self.n_proc > 1:  # every process's shards, in shard order
                from jax.experimental import multihost_utils
                pred = np.asarray(multihost_utils.process_allgather(np.asarray(pred)))
            pred = np.asarray(pred)
            mask = plans[split][1].reshape(-1) > 0
            preds[split] = pred.reshape(-1)[mask]
        return metrics, preds
