"""Run by tests/test_data_parallel.py: the same training as 1 process x 2 devices or 2 processes x 1 device.

usage: multiprocess_equivalence.py OUT.json PATHS [PROCESS_ID NUM_PROCESSES PORT]
PATHS: the data-parallel paths to run one after the other, comma-separated (pmap,shard_map,jit);
OUT.json holds each path's results under its name.
With a process id, joins a jax.distributed job on 127.0.0.1 (CPU, gloo collectives);
process 0 writes the final parameters and metrics to OUT.json.
"""

import json
import sys

import jax

if len(sys.argv) > 3:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{sys.argv[5]}", num_processes=int(sys.argv[4]),
                               process_id=int(sys.argv[3]))

import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

from jax_models.mlp import MLP  # noqa: E402
from train.backends.checkpoint import Checkpointer  # noqa: E402
from train.backends.jax_backend import JaxBackend  # noqa: E402
from train.engine.schedule import epoch_batches
from train.backends.jax_parallel import model_axis  # noqa: E402
from train.backends.jax_trainer import select_devices  # noqa: E402
from train.runtime import enable_compilation_cache  # noqa: E402


# Batches of 32, 3 a epoch: every step's collectives cross the processes through gloo, and are its cost.
BATCH = 32


def backend(arrays, path, seed=0):
    devices = select_devices(0, BATCH)
    model = MLP(6, (16, 8), 2, batch_norm=True, dropout=0.25, axis_name=model_axis(path), rngs=nnx.Rngs(seed))
    return JaxBackend(model, optax.sgd(0.1, momentum=0.9), lambda v: v, arrays, seed=seed, devices=devices,
                      eval_batch=8, parallel=path)


def run(path, ckpt_dir):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 6)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] * x[:, 2] > 0).astype(np.int32)
    arrays = {"train_x": x, "train_y": y, "test_x": x[:30], "test_y": y[:30]}
    be = backend(arrays, path)
    evs, restored = [], None
    for e in range(3):
        if e == 2 and be.global_state:
            # Every process saves the sharded state, and a fresh backend (another initialisation) restores it.
            ckpt = Checkpointer(ckpt_dir)
            ckpt.save_sharded(e, be.device_state(), {"epoch": e})
            saved = be.host_state()
            be = backend(arrays, path, seed=1)
            period, state, meta = ckpt.restore_latest(be.device_state(), sharded=True)
            be.load_device_state(state)
            ckpt.close()
            restored = {"period": period, "meta_epoch": meta["epoch"], "equal": all(
                np.array_equal(a, b) for a, b in zip(jax.tree.leaves(saved), jax.tree.leaves(be.host_state())))}
            if not restored["equal"]:  # on any process
                sys.exit(f"process {jax.process_index()}: the restored state differs from the saved one")
        be.train(epoch_batches(96, BATCH, e, 0))
        evs.append(be.evaluate())
    st = be.host_state()
    leaves = [np.asarray(v).ravel().tolist() for v in jax.tree.leaves((st.params, st.model_state))]
    return {"shards": be.trainer.shards, "leaves": leaves, "evals": evs, "restored": restored,
            "predictions": be.last_predictions["test"].tolist()}


def main(out, paths):
    enable_compilation_cache()  # as every training command does: a rerun loads its programs
    report = {path: run(path, f"{out}.{path}.checkpoints") for path in paths.split(",")}
    if jax.process_index() == 0:
        with open(out, "w") as f:
            json.dump(report, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
