"""JAX behind the backend interface: an NNX model trained by the compiled Trainer (jit or pmap)."""

from __future__ import annotations

import platform
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from train.backends.jax_trainer import Trainer, create_state, eval_plan, param_count


def jax_device_info() -> dict[str, Any]:
    """config.json's ``devices`` for a run on JAX's devices (all of this job's)."""
    devs = jax.devices()
    return {"platform": devs[0].platform, "device_kind": devs[0].device_kind,
            "local_device_count": jax.local_device_count(), "device_count": len(devs),
            "process_count": jax.process_count(), "host": platform.node()}


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

    def device_info(self) -> dict:
        return jax_device_info()

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        st = self.host_state()
        logits, _ = self.trainer.fns.apply(st.params, st.model_state, x, train=False)
        return np.asarray(jax.nn.softmax(logits.astype(np.float32), axis=-1))
