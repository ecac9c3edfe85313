"""The hand-written NumPy MLP behind the backend interface."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from train.backends.base import Recipe
from train.engine.results import own_device_info
from train.errors import UsageError

NAME = "NumPy"
MISSING = "NumPy is not installed"  # the baseline's own framework: always there


def available() -> bool:
    return True


def optimizer(opt):
    """``opt`` (:class:`~train.backends.base.Optimizer`) in numpy_mlp's spelling."""
    from numpy_mlp.optim import SGD, AdamW
    if opt.kind == "sgd":
        return SGD(opt.lr)
    if opt.kind == "adamw":
        return AdamW(opt.lr, weight_decay=opt.weight_decay)
    raise UsageError(f"--framework numpy: the NumPy baseline has no {opt.kind} optimizer")


def normalizer(mean: np.ndarray, std: np.ndarray):
    """NHWC uint8 -> the flattened, normalised float32 rows the JAX MLP sees: ``(x / 255 - mean) * (1 / std)``."""
    m, inv = np.asarray(mean, np.float32), np.asarray(1.0 / std, np.float32)
    return lambda x: ((x.astype(np.float32) * np.float32(1.0 / 255.0) - m) * inv).reshape(len(x), -1)


def from_jax(jax_model, recipe: Recipe, arrays: Mapping[str, np.ndarray]) -> NumpyBackend:
    """The hand-written NumPy MLP with ``jax_model``'s weights ([in, out] both); only a plain MLP (no batch
    norm, no dropout) has one."""
    from jax_models.mlp import MLP
    from numpy_mlp import MLP as NumpyMLP

    if not isinstance(jax_model, MLP) or len(jax_model.norms) or jax_model.dropout is not None:
        raise UsageError("--framework numpy: the NumPy baseline runs only MLPs without batch norm or dropout")
    weights = [(np.asarray(lin.kernel[...]), np.asarray(lin.bias[...])) for lin in jax_model.linears]
    sizes = [w.shape[0] for w, _ in weights]
    model = NumpyMLP(sizes[0], sizes[1:], weights[-1][0].shape[1], seed=recipe.seed, dtype=np.dtype(recipe.dtype))
    model.set_weights(weights)
    kw = {"eval_batch": recipe.eval_batch} if recipe.eval_batch is not None else {}
    pre = normalizer(*recipe.normalize) if recipe.normalize is not None else None
    return NumpyBackend(model, arrays, optimizer=optimizer(recipe.optimizer), preprocess=pre,
                        eval_splits=recipe.eval_splits, **kw)


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
