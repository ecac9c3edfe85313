"""Framework backends behind one small interface, so a single loop drives NumPy and JAX alike.

A backend trains for a period given its batch indices ``[K, B]``
(``train(idx)`` -> per-step train metrics ``{"loss": [K], "accuracy": [K]}``
on the host) and evaluates the splits it was built for (``evaluate()`` ->
``{split: {"loss", "accuracy", "count"}}``); the two are separate calls so the
loop can time training and evaluation apart. Every backend sees the same
batches in the same order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import jax
import numpy as np

from train.results import own_device_info
from train.trainer import Trainer, create_state, eval_plan, param_count


class JaxBackend:
    framework = "jax"

    def __init__(self, model, tx, preprocess, arrays: Mapping[str, np.ndarray], *, seed: int,
                 devices: Sequence | None = None, eval_batch: int = 1024,
                 eval_splits: Sequence[str] = ("train", "test"), compiler_options: dict | None = None,
                 fuse: bool = True) -> None:
        graphdef, state = create_state(model, tx, seed)
        self.graphdef = graphdef
        self.param_count = param_count(state.params)
        self.trainer = Trainer(graphdef, tx, preprocess, devices=devices, compiler_options=compiler_options, fuse=fuse)
        self.state = self.trainer.replicate(state)
        self.data = self.trainer.replicate(dict(arrays))
        shards = self.trainer.shards
        self.evals = {s: eval_plan(len(arrays[f"{s}_y"]), eval_batch, shards) for s in eval_splits}
        self.last_predictions: dict[str, np.ndarray] = {}  # {split: labels predicted at the last evaluation}

    @property
    def compile_time_s(self) -> float:
        return self.trainer.compile_time_s

    @property
    def devices(self) -> int:
        return self.trainer.shards

    def train(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        self.state, step_metrics = self.trainer.train(self.state, self.data, idx)
        return self.trainer.host_step_metrics(step_metrics)

    def evaluate(self) -> dict[str, dict]:
        out = self.trainer.evaluate(self.state, self.data, self.evals)
        ev, self.last_predictions = self.trainer.host_evals(out, self.evals, order=self.evals)
        return ev

    def host_state(self):
        return self.trainer.unreplicate(self.state)

    def load_state(self, host_state) -> None:
        self.state = self.trainer.replicate(host_state)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        st = self.host_state()
        logits, _ = self.trainer.fns.apply(st.params, st.model_state, x, train=False)
        return np.asarray(jax.nn.softmax(logits.astype(np.float32), axis=-1))


class NumpyBackend:
    """The hand-written NumPy MLP, trained by a ``numpy_mlp.optim`` optimizer (SGD or AdamW).

    ``preprocess`` maps a batch of raw inputs to the model's inputs (e.g. uint8 images to normalised
    floats); it runs per batch, so a large split is never held as floats all at once.
    """

    framework = "numpy"
    compile_time_s = 0.0
    devices = 1
    platform = "cpu"
    compiler = "numpy"  # nothing is compiled: summary.json's compilation counts are JAX's, none in training

    def __init__(self, model, arrays: Mapping[str, np.ndarray], *, optimizer,
                 preprocess: Callable[[np.ndarray], np.ndarray] | None = None,
                 eval_splits: Sequence[str] = ("train", "test"), eval_batch: int = 4096) -> None:
        self.model = model
        self.optimizer = optimizer
        self.preprocess = preprocess or (lambda x: x)
        cast = preprocess is None  # raw float inputs: cast once to the model's dtype
        self.arrays = {k: (v.astype(model.dtype) if cast and k.endswith("_x") else v) for k, v in arrays.items()}
        self.eval_splits = tuple(eval_splits)
        self.eval_batch = eval_batch
        self.param_count = model.param_count
        self.last_predictions: dict[str, np.ndarray] = {}

    def _x(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.preprocess(x), self.model.dtype)

    def train(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        x_all, y_all = self.arrays["train_x"], self.arrays["train_y"]
        losses, accs = [], []
        for i in idx:
            loss, acc = self.model.step(self._x(x_all[i]), y_all[i], self.optimizer)
            losses.append(loss)
            accs.append(acc)
        return {"loss": np.asarray(losses), "accuracy": np.asarray(accs)}

    def evaluate(self) -> dict[str, dict]:
        ev = {}
        for s in self.eval_splits:
            x, y = self.arrays[f"{s}_x"], self.arrays[f"{s}_y"]
            loss_sum, preds = 0.0, []
            for a in range(0, len(y), self.eval_batch):
                loss, p = self.model.loss(self._x(x[a:a + self.eval_batch]), y[a:a + self.eval_batch])
                loss_sum += loss * len(p)
                preds.append(p.argmax(axis=1))
            self.last_predictions[s] = np.concatenate(preds).astype(np.int32)
            ev[s] = {"loss": loss_sum / len(y), "accuracy": float((self.last_predictions[s] == y).mean()),
                     "count": len(y)}
        return ev

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return self.model.softmax.forward(self.model.logits(self._x(x)))

    def device_info(self) -> dict:
        return own_device_info(self.platform)

    def host_state(self) -> dict:
        """Weights and optimizer state (AdamW's step and moments), as copies: the next step updates in place."""
        params = [m.params for m in self.model.linears]
        opt = self.optimizer.state_dict(params)
        return {"params": {str(i): {k: a.copy() for k, a in p.items()} for i, p in enumerate(params)},
                **({"optimizer": opt} if opt else {})}

    def load_state(self, state) -> None:
        for i, m in enumerate(self.model.linears):
            m.params.update({k: np.array(a) for k, a in state["params"][str(i)].items()})
        self.optimizer.load_state_dict(state.get("optimizer", {}))


def batch_stream(n: int, batch: int, steps: int, seed: int) -> np.ndarray:
    """[steps, batch] indices: consecutive slices of a stream of shuffled permutations of 0..n-1.

    Every example is seen once before any is seen twice; the stream is a pure function
    of (n, batch, steps, seed), so every framework gets the same batches in the same order.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xBA7C4]))
    need = steps * batch
    perms = [rng.permutation(n) for _ in range(-(-need // n))]
    return np.concatenate(perms)[:need].astype(np.int32).reshape(steps, batch)


def epoch_batches(n: int, batch: int, epoch: int, seed: int) -> np.ndarray:
    """One epoch's [n // batch, batch] shuffled indices (the remainder is dropped), a function of (seed, epoch)."""
    if n < batch:
        raise ValueError(f"batch size {batch} is larger than the {n} training examples")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xE90C, epoch]))
    steps = n // batch
    return rng.permutation(n)[: steps * batch].astype(np.int32).reshape(steps, batch)


class LazyPeriods(Sequence):
    """A schedule whose period ``p`` is ``make(p)``, built when the loop gets to it.

    Memory stays constant however many epochs are asked for; every period is still a pure
    function of its number, so a resumed run sees the batches an uninterrupted one saw.
    """

    def __init__(self, make: Callable[[int], np.ndarray], count: int, steps: int) -> None:
        self.make, self.count, self.steps = make, int(count), int(steps)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, p):
        if isinstance(p, slice):
            return [self[i] for i in range(*p.indices(self.count))]
        if not -self.count <= p < self.count:
            raise IndexError(p)
        return self.make(p % self.count)

    @property
    def total_steps(self) -> int:
        return self.count * self.steps
