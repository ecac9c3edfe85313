"""The shared JAX trainer: pure step functions, many steps fused per compiled call.

Every model in the project (toy MLP, CIFAR MLP, CNN, RNN) trains through this
module. The design, and why:

* **Pure functions on a pytree state.** The Flax NNX model is split once into a
  static ``graphdef`` and two ``nnx.State`` trees (parameters; everything else,
  e.g. batch-norm statistics). Step functions take and return a
  :class:`TrainState`, so they compile once and nothing mutates a Variable
  across trace levels.
* **Data lives on the device.** Whole splits are put on the accelerator once;
  a training period receives only an index array ``[K, B]`` and gathers its
  batches on device. Per-step host->device traffic is a few bytes.
* **Fusion.** A *period* (the steps between two evaluations, e.g. one epoch) is
  one ``lax.scan`` over steps followed by a masked, batched evaluation of the
  requested splits, all in one compiled call, so Python dispatch cost is paid
  once per period, not once per step.
* **Data parallel with the same code.** With ``devices > 1`` the same period
  function runs under ``jax.pmap`` with axis ``"batch"``: gradients, metrics and
  batch-norm statistics are averaged across devices, so N devices compute what
  one device computes on the same global batch. State and data stay replicated
  on the devices between calls; only the index arrays are sent, already split.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx, struct
from jax import lax

AXIS = "batch"
Preprocess = Callable[[jax.Array], jax.Array]


class TrainState(struct.PyTreeNode):
    step: jax.Array          # int32 scalar: optimizer steps taken
    params: Any              # nnx.State of nnx.Param
    model_state: Any         # nnx.State of every other Variable (batch stats)
    opt_state: Any           # optax state
    key: jax.Array           # uint32[2]: base key for dropout, folded with the step


def split_model(model: nnx.Module):
    """model -> (graphdef, params, model_state)."""
    return nnx.split(model, nnx.Param, ...)


def create_state(model: nnx.Module, tx: optax.GradientTransformation, seed: int) -> tuple[Any, TrainState]:
    graphdef, params, model_state = split_model(model)
    state = TrainState(step=jnp.zeros((), jnp.int32), params=params, model_state=model_state,
                       opt_state=tx.init(params), key=jax.random.PRNGKey(seed ^ 0x5EED))
    return graphdef, state


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
        key = jax.random.fold_in(state.key, state.step)
        if self.axis_name:
            # Each device draws its own dropout mask for its own examples.
            key = jax.random.fold_in(key, lax.axis_index(self.axis_name))

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
                   "grad_norm": optax.global_norm(grads)}
        return state.replace(step=state.step + 1, params=params, model_state=new_ms,
                             opt_state=opt_state), metrics

    def train_steps(self, state: TrainState, x_all, y_all, idx):
        """lax.scan of train_step over idx [K, B]: batch k is (x_all[idx[k]], y_all[idx[k]])."""
        def body(st, i):
            return self.train_step(st, x_all[i], y_all[i])
        return lax.scan(body, state, idx)

    def eval_sums(self, state: TrainState, x_all, y_all, idx, mask):
        """Evaluate over idx/mask [C, E] (mask 0 = padding).

        Returns ([loss_sum, correct, count] summed over devices, predicted labels [C, E]).
        """
        def body(acc, im):
            i, m = im
            logits, _ = self.apply(state.params, state.model_state, x_all[i], train=False)
            y = y_all[i]
            pred = jnp.argmax(logits, -1).astype(jnp.int32)
            loss = (cross_entropy(logits, y) * m).sum()
            correct = ((pred == y) * m).sum()
            return (acc[0] + loss, acc[1] + correct, acc[2] + m.sum()), pred

        zero = jnp.zeros((), _acc_dtype(x_all) if jnp.issubdtype(x_all.dtype, jnp.floating) else jnp.float32)
        sums, preds = lax.scan(body, (zero, zero, zero), (idx, mask))
        sums = jnp.stack(sums)
        return (lax.psum(sums, self.axis_name) if self.axis_name else sums), preds

    def period(self, state: TrainState, data: Mapping[str, jax.Array], idx, evals):
        """K fused train steps, then an evaluation of each split in ``evals``.

        data: {"train_x", "train_y", <split>_x, <split>_y, ...} on device.
        idx: [K, B] train indices. evals: {split: (idx [C, E], mask [C, E])}.
        Returns (state, per-step metrics [K], {split: ([loss_sum, correct, count], predictions [C, E])}).
        """
        state, step_metrics = self.train_steps(state, data["train_x"], data["train_y"], idx)
        sums = {s: self.eval_sums(state, data[f"{s}_x"], data[f"{s}_y"], i, m) for s, (i, m) in evals.items()}
        return state, step_metrics, sums

    def evaluate(self, state: TrainState, data, evals):
        return {s: self.eval_sums(state, data[f"{s}_x"], data[f"{s}_y"], i, m) for s, (i, m) in evals.items()}


def eval_plan(n: int, batch: int, n_shards: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Index and mask arrays that cover 0..n-1 in chunks of ``batch`` rows, padded with masked zeros.

    Returns idx, mask of shape [n_shards, C, E] (the chunks dealt to shards in order);
    ``batch`` is shrunk for small sets so little padding is evaluated.
    """
    per_shard = -(-n // n_shards)
    e = max(1, min(batch, per_shard))
    c = -(-per_shard // e)
    total = n_shards * c * e
    idx = np.zeros(total, np.int32)
    mask = np.zeros(total, np.float32)
    idx[:n] = np.arange(n, dtype=np.int32)
    mask[:n] = 1.0
    return idx.reshape(n_shards, c, e), mask.reshape(n_shards, c, e)


class Trainer:
    """Runs :class:`StepFns` on one device (``jit``) or on several (``pmap``).

    The caller supplies host arrays and index plans; this class owns device
    placement, compilation (timed separately: ``compile_time_s``) and the
    conversion of device results back to plain floats.
    """

    def __init__(self, graphdef, tx, preprocess: Preprocess, *, devices: list | None = None) -> None:
        self.devices = list(devices) if devices else [jax.local_devices()[0]]
        self.n = len(self.devices)
        self.fns = StepFns(graphdef, tx, preprocess, AXIS if self.n > 1 else None)
        self.compile_time_s = 0.0
        self._compiled: dict[Any, Any] = {}
        if self.n > 1:
            mesh = jax.sharding.Mesh(np.array(self.devices), (AXIS,))
            self._sharded = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(AXIS))
            self._period = jax.pmap(self.fns.period, axis_name=AXIS, devices=self.devices, donate_argnums=(0,))
            self._evaluate = jax.pmap(self.fns.evaluate, axis_name=AXIS, devices=self.devices)
        else:
            self._period = jax.jit(self.fns.period, donate_argnums=(0,))
            self._evaluate = jax.jit(self.fns.evaluate)

    # -- placement -------------------------------------------------------------------------
    def replicate(self, tree):
        """Host or device pytree -> on every device (a leading device axis under pmap)."""
        if self.n == 1:
            return jax.device_put(tree, self.devices[0])

        def rep(x):
            x = np.asarray(x)
            return jax.make_array_from_callback((self.n, *x.shape), self._sharded, lambda _: x[None])
        return jax.tree.map(rep, tree)

    def shard(self, tree):
        """Host arrays with a leading axis of size n -> one slice per device (no-op axis for n=1)."""
        if self.n == 1:
            return jax.device_put(jax.tree.map(lambda x: x[0], tree), self.devices[0])
        return jax.device_put(tree, self._sharded)

    def unreplicate(self, tree):
        """Device state -> host numpy copy of one replica, without an on-device gather."""
        if self.n == 1:
            return jax.device_get(tree)
        return jax.tree.map(lambda x: np.asarray(x.addressable_shards[0].data)[0], tree)

    def split_batches(self, idx: np.ndarray) -> np.ndarray:
        """Global train indices [K, B] -> per-device [n, K, B/n]: device d gets columns d*B/n..(d+1)*B/n."""
        k, b = idx.shape
        if b % self.n:
            raise ValueError(f"global batch {b} is not divisible by {self.n} devices")
        return np.ascontiguousarray(idx.reshape(k, self.n, b // self.n).transpose(1, 0, 2))

    # -- running -----------------------------------------------------------------------------
    def _call(self, name, fn, *args):
        """Compile on first use (AOT, timed) and run; one executable per argument shape signature."""
        sig = (name, tuple((getattr(a, "shape", None), str(getattr(a, "dtype", ""))) for a in jax.tree.leaves(args)))
        exe = self._compiled.get(sig)
        if exe is None:
            t = time.perf_counter()
            exe = fn.lower(*args).compile() if hasattr(fn, "lower") else fn
            self.compile_time_s += time.perf_counter() - t
            self._compiled[sig] = exe
        return exe(*args)

    def period(self, state, data, idx: np.ndarray, evals: Mapping[str, tuple[np.ndarray, np.ndarray]]):
        """Run a fused period. idx: global [K, B]; evals: {split: eval_plan(n, E, self.n)}."""
        dev_idx = self.shard(self.split_batches(np.asarray(idx, np.int32)))
        dev_evals = {s: self.shard(plan) for s, plan in evals.items()}
        state, step_metrics, sums = self._call("period", self._period, state, data, dev_idx, dev_evals)
        return state, step_metrics, sums

    def evaluate(self, state, data, evals):
        dev_evals = {s: self.shard(plan) for s, plan in evals.items()}
        return self._call("evaluate", self._evaluate, state, data, dev_evals)

    def host_metrics(self, step_metrics, evals_out, plans, order=None):
        """Device results -> (per-step metrics {name: [K]}, {split: {"loss", "accuracy", "count"}},
        {split: predicted labels [n] in example order}), splits in ``order``."""
        step_metrics, evals_out = jax.device_get((step_metrics, evals_out))
        if self.n > 1:  # metrics are identical on every device after pmean/psum
            step_metrics = jax.tree.map(lambda x: x[0], step_metrics)
        metrics, preds = {}, {}
        for split in order or evals_out:
            sums, pred = evals_out[split]
            loss_sum, correct, count = (float(v) for v in np.asarray(sums).reshape(-1, 3)[0])
            metrics[split] = {"loss": loss_sum / count, "accuracy": correct / count, "count": int(count)}
            # eval_plan lays examples 0..n-1 out in order across shards, chunks and rows, padding last.
            mask = plans[split][1].reshape(-1) > 0
            preds[split] = np.asarray(pred).reshape(-1)[mask]
        return step_metrics, metrics, preds
