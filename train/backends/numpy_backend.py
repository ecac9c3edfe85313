"""The hand-written NumPy MLP behind the backend interface."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from train.engine.results import own_device_info


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
