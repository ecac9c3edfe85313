"""Run by tests/test_data_parallel.py: the same training as 1 process x 2 devices or 2 processes x 1 device.

usage: multiprocess_equivalence.py OUT.json [PROCESS_ID NUM_PROCESSES PORT]
With a process id, joins a jax.distributed job on 127.0.0.1 (CPU, gloo collectives);
process 0 writes the final parameters and metrics to OUT.json.
"""

import json
import sys

import jax

if len(sys.argv) > 2:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{sys.argv[4]}", num_processes=int(sys.argv[3]),
                               process_id=int(sys.argv[2]))

import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

from jax_models.mlp import MLP  # noqa: E402
from train.backends.jax_backend import JaxBackend  # noqa: E402
from train.engine.schedule import epoch_batches
from train.backends.jax_trainer import AXIS, select_devices  # noqa: E402


def main(out):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 6)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] * x[:, 2] > 0).astype(np.int32)
    arrays = {"train_x": x, "train_y": y, "test_x": x[:30], "test_y": y[:30]}
    devices = select_devices(0, 16)
    model = MLP(6, (16, 8), 2, batch_norm=True, axis_name=AXIS, rngs=nnx.Rngs(0))
    be = JaxBackend(model, optax.sgd(0.1, momentum=0.9), lambda v: v, arrays, seed=0, devices=devices, eval_batch=8)
    evs = []
    for e in range(3):
        be.train(epoch_batches(96, 16, e, 0))
        evs.append(be.evaluate())
    st = be.host_state()
    if jax.process_index() == 0:
        leaves = [np.asarray(v).ravel().tolist() for v in jax.tree.leaves((st.params, st.model_state))]
        with open(out, "w") as f:
            json.dump({"shards": be.trainer.shards, "leaves": leaves, "evals": evs,
                       "predictions": be.last_predictions["test"].tolist()}, f)


if __name__ == "__main__":
    main(sys.argv[1])
