"""Several seeds of one model side by side in one compiled program (``jax.vmap`` over the seed axis).

A small model leaves an accelerator mostly idle, so S seeds share one program; each matches its
separate run to float rounding. With several devices the seed axis is split over them with
``shard_map`` (8 devices, 24 seeds: 3 seeds per device, still one program). See
docs/data-parallel.md ("Seeds side by side").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from train.backends.jax_backend import grad_norms, jax_device_info, norm_constants, normalize as normalize_images
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from train.backends.jax_parallel import AXIS
from train.backends.jax_trainer import AotCache, StepFns, create_state, eval_plan, matmul_scope, param_count
from train.precision import Precision

# Where each seed's normalisation statistics travel: in its data, so vmap hands every seed its own.
MEAN, INV_STD = "_norm_mean", "_norm_inv_std"


def vmap_supported() -> bool:
    """True where seeds can share one program: one process (its devices split the seeds)."""
    return jax.process_count() == 1


def seed_devices(devices: Sequence, runs: int) -> list:
    """The devices ``runs`` seeds spread over: the most of ``devices`` that split them evenly."""
    n = max(d for d in range(1, len(devices) + 1) if runs % d == 0)
    return list(devices)[:n]


def stack_trees(trees: Sequence[Any]):
    """Host pytrees of identical structure -> one pytree of numpy arrays with a leading axis."""
    return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *trees)


def unstack_tree(tree, n: int) -> list:
    """The inverse of :func:`stack_trees`: a stacked host pytree -> n pytrees of numpy arrays."""
    tree = jax.device_get(tree)
    return [jax.tree.map(lambda x, i=i: np.asarray(x[i]), tree) for i in range(n)]


class MultiSeedJaxBackend:
    """S seeds of one architecture in one vmapped program: JaxBackend's interface, a list per value.

    ``models[s]``/``arrays[s]`` are built as seed ``s``'s single run would; seeds share ``tx`` and shapes.
    ``normalize[s]``: seed ``s``'s per-channel (mean, std) for uint8 images (``normalizer``'s, per seed),
    else ``preprocess`` serves every seed. ``fuse=False`` trains one vmapped step per call (a CPU convnet).
    """

    framework = "jax"
    compiler = "xla"

    def __init__(self, models: Sequence, tx, preprocess, arrays: Sequence[Mapping[str, np.ndarray]], *,
                 seeds: Sequence[int], device=None, devices: Sequence | None = None, eval_batch: int = 1024,
                 eval_splits: Sequence[str] = ("test",), compiler_options: dict | None = None,
                 precision: Precision | None = None, normalize: Sequence | None = None,
                 fuse: bool = True) -> None:
        if not (len(models) == len(arrays) == len(seeds)) or not seeds:
            raise ValueError(f"one model and one data set per seed: got {len(models)} models, "
                             f"{len(arrays)} data sets, {len(seeds)} seeds")
        self.runs = len(seeds)
        self.seeds = [int(s) for s in seeds]
        states, graphdef = [], None
        for model, seed in zip(models, seeds):
            gd, state = create_state(model, tx, seed)  # the same init and key as JaxBackend's
            if graphdef is None:
                graphdef = gd
            elif gd != graphdef:
                raise ValueError("every seed's model must have the same architecture")
            states.append(jax.device_get(state))
        self.graphdef = graphdef
        self.param_count = param_count(states[0].params)
        self._place(devices or [device or jax.local_devices()[0]])
        self.precision = precision
        self._call = AotCache(compiler_options, precision=precision)  # as Trainer compiles: ahead of time, timed apart

        keys = sorted(arrays[0])
        for a in arrays[1:]:
            if sorted(a) != keys or any(np.shape(a[k]) != np.shape(arrays[0][k]) or
                                        np.asarray(a[k]).dtype != np.asarray(arrays[0][k]).dtype for k in keys):
                raise ValueError("every seed's data must have the same splits, shapes and dtypes")
        self.fns = StepFns(graphdef, tx, preprocess)
        self.tx, self.normalize = tx, normalize
        self.state = jax.device_put(stack_trees(states), self._per_seed)
        data = {k: np.stack([np.asarray(a[k]) for a in arrays]) for k in keys}
        if normalize is not None:
            consts = [norm_constants(m, sd) for m, sd in normalize]  # as normalizer makes them for one run
            data[MEAN], data[INV_STD] = (np.stack(c) for c in zip(*consts))
        self.data = jax.device_put(data, self._per_seed)
        # One plan for all seeds (equal split sizes); eval_plan's leading shard axis is 1 here.
        self.evals = {s: tuple(p[0] for p in eval_plan(len(arrays[0][f"{s}_y"]), eval_batch, 1))
                      for s in eval_splits}
        self._dev_evals = jax.device_put(self.evals, self._shared)
        self.last_predictions: list[dict[str, np.ndarray]] = [{} for _ in self.seeds]

        # The single run's pure functions, mapped over axis 0 of state, data and indices; the
        # eval plan is shared.
        self.fuse = fuse
        # Named as the single run's programs, which is how the compile log counts them.
        def train_period(st, d, i):
            return self._fns(d).train_period(st, d, i)

        def data_step(st, d, i):
            return self._fns(d).data_step(st, d, i)

        def evaluate(st, d, e):
            return self._fns(d).evaluate(st, d, e)

        self._train = jax.jit(self._spread(jax.vmap(train_period)), donate_argnums=(0,))
        self._step = jax.jit(self._spread(jax.vmap(data_step)), donate_argnums=(0,))
        self._evaluate = jax.jit(self._spread(jax.vmap(evaluate, in_axes=(0, 0, None)), shared_plan=True))

    def _place(self, devices: Sequence) -> None:
        """The seed axis over several devices (shard_map, each device vmaps its own seeds), else one device."""
        self.seed_devices = seed_devices(devices, self.runs)
        self.device = self.seed_devices[0]
        if len(self.seed_devices) > 1:
            mesh = Mesh(np.array(self.seed_devices), (AXIS,))
            self._per_seed, self._shared = NamedSharding(mesh, P(AXIS)), NamedSharding(mesh, P())
        else:
            self._per_seed = self._shared = self.device

    def _spread(self, f, shared_plan: bool = False):
        """``f(state, data, plan)`` over the seed devices: each runs it on its block of the seed axis
        (the plan too, unless ``shared_plan``), with no collective between seeds."""
        if len(self.seed_devices) == 1:
            return f
        return jax.shard_map(f, mesh=self._per_seed.mesh, in_specs=(P(AXIS), P(AXIS), P() if shared_plan else P(AXIS)),
                             out_specs=P(AXIS), check_vma=False)

    def _fns(self, data) -> StepFns:
        """The single run's step functions, with this seed's normalisation where seeds have their own."""
        if self.normalize is None:
            return self.fns
        mean, inv_std = data[MEAN], data[INV_STD]
        return StepFns(self.graphdef, self.tx, lambda x: normalize_images(x, mean, inv_std))

    @property
    def devices(self) -> int:
        return 1  # each seed trains on one device

    @property
    def side_by_side(self) -> dict:
        """For each seed's summary: the devices the seeds that shared its program spread over."""
        return {"seed_devices": len(self.seed_devices)} if len(self.seed_devices) > 1 else {}

    @property
    def compile_time_s(self) -> float:
        return self._call.compile_time_s

    @property
    def platform(self) -> str:
        return self.device.platform

    def device_info(self) -> dict:
        return jax_device_info()

    def grad_norms(self, x: np.ndarray, y: np.ndarray, run: int = 0) -> list[float]:
        """Seed ``run``'s RNN gradient norms now (see :meth:`JaxBackend.grad_norms`)."""
        return grad_norms(self.graphdef, self.host_state()[run], x, y, self.precision)

    def predict_proba(self, x: np.ndarray, run: int = 0) -> np.ndarray:
        """Seed ``run``'s class probabilities of raw inputs ``x``, eval mode (see JaxBackend.predict_proba)."""
        st = self.host_state()[run]
        fns = self.fns if self.normalize is None else self._fns(
            {MEAN: self.data[MEAN][run], INV_STD: self.data[INV_STD][run]})
        with matmul_scope(self.precision):
            logits, _ = fns.apply(st.params, st.model_state, x, train=False)
            return np.asarray(jax.nn.softmax(logits.astype(np.float32), axis=-1))

    # -- the loop's interface ------------------------------------------------------------------
    def train(self, idx: np.ndarray) -> list[dict[str, np.ndarray]]:
        """Train every seed on its own batches idx [S, K, B] -> S per-step metric dicts {name: [K]}."""
        idx = np.asarray(idx, np.int32)
        if idx.ndim != 3 or idx.shape[0] != self.runs:
            raise ValueError(f"expected batch indices [{self.runs}, K, B], got shape {idx.shape}")
        if self.fuse:
            self.state, metrics = self._call("train", self._train, self.state, self.data,
                                             jax.device_put(idx, self._per_seed))
        else:  # the same steps, one compiled call each
            steps = []
            for k in range(idx.shape[1]):
                self.state, m = self._call("step", self._step, self.state, self.data,
                                           jax.device_put(idx[:, k], self._per_seed))
                steps.append(m)
            metrics = jax.tree.map(lambda *xs: jnp.stack(xs, axis=1), *steps)
        metrics = jax.device_get(metrics)
        return [{k: np.asarray(v[s]) for k, v in metrics.items()} for s in range(self.runs)]

    def evaluate(self) -> list[dict[str, dict]]:
        """Evaluate every seed on its own splits -> S dicts {split: {"loss", "accuracy", "count"}}."""
        out = jax.device_get(self._call("evaluate", self._evaluate, self.state, self.data, self._dev_evals))
        results, preds = [], []
        for r in range(self.runs):
            ev, pr = {}, {}
            for split, (sums, pred) in out.items():
                loss_sum, correct, count = (float(v) for v in np.asarray(sums[r]))
                ev[split] = {"loss": loss_sum / count, "accuracy": correct / count, "count": int(count)}
                pr[split] = np.asarray(pred[r]).reshape(-1)[self.evals[split][1].reshape(-1) > 0]
            results.append({s: ev[s] for s in self.evals})
            preds.append(pr)
        self.last_predictions = preds
        return results

    def host_state(self) -> list:
        """S host TrainStates, each shaped exactly like a single run's (so its checkpoint is one)."""
        return unstack_tree(self.state, self.runs)

    def load_state(self, host_states: Sequence) -> None:
        if len(host_states) != self.runs:
            raise ValueError(f"expected {self.runs} states, got {len(host_states)}")
        self.state = jax.device_put(stack_trees(host_states), self._per_seed)


class SeedView:
    """Seed ``run`` of a side-by-side backend, as a run's figures and files read a single run's backend."""

    def __init__(self, backend: MultiSeedJaxBackend, run: int) -> None:
        self.backend, self.run = backend, run

    @property
    def last_predictions(self) -> dict[str, np.ndarray]:
        return self.backend.last_predictions[self.run]

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return self.backend.predict_proba(x, run=self.run)

    def grad_norms(self, x: np.ndarray, y: np.ndarray, run: int = 0) -> list[float]:
        return self.backend.grad_norms(x, y, run=self.run)

    def __getattr__(self, name: str):
        return getattr(self.backend, name)


def for_run(backend, run: int):
    """What run ``run`` of ``backend`` reads: the backend itself where it trains one run."""
    return SeedView(backend, run) if isinstance(backend, MultiSeedJaxBackend) else backend
